"""The signing secret's cache: it survives its store, never blocks on it, and spans rotations.

Secrets Manager is moto; a failing or slow store is a wrapper around it. Time is a
clock the test moves, so the backoff and overlap are checked without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from auth.config import (
    SECRET_CACHE_SECONDS,
    SECRET_CONNECT_TIMEOUT_SECONDS,
    SECRET_MAX_ATTEMPTS,
    SECRET_READ_TIMEOUT_SECONDS,
    SECRET_REREAD_AFTER_SECONDS,
    SECRET_RETRY_FIRST_SECONDS,
    SECRET_RETRY_MAX_SECONDS,
    SECRET_ROTATION_OVERLAP_SECONDS,
    AuthSettings,
)
from auth.secret_cache import secrets_manager_client
from auth.verifier import KeyUnavailable, Verifier
from eventlog.errors import Unauthorized
from tests.auth_support import OTHER_SECRET, TEST_SECRET, token

SAFETY_TIMEOUT_SECONDS = 30
"""Only so that a regression fails instead of hanging the suite; nothing is timed with it."""


class Store:
    """Moto's Secrets Manager, with reads counted, and failing or blocking on demand."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.reads = 0  # reads of the current version: one per refresh
        self.failing = False
        self.gate: threading.Event | None = None  # when set, reads wait for it
        self.entered = threading.Event()

    def get_secret_value(self, **kwargs: Any) -> Any:
        if "VersionStage" not in kwargs:
            self.reads += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(SAFETY_TIMEOUT_SECONDS)
        if self.failing:
            raise ConnectionError("the secret store is unreachable")
        return self.real.get_secret_value(**kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def secret(aws: None) -> tuple[Any, str]:
    import boto3

    client = boto3.client("secretsmanager")
    return client, client.create_secret(Name="realtime-auth", SecretString=TEST_SECRET)["ARN"]


def verifier_on(arn: str, store: Store, clock: Clock) -> Verifier:
    return Verifier(settings=AuthSettings(secret_arn=arn), secrets_client=store, clock=clock)


def test_the_secret_is_read_once_per_cache_period(secret: tuple[Any, str]) -> None:
    client, arn = secret
    store, clock = Store(client), Clock()
    check = verifier_on(arn, store, clock)
    for _ in range(3):
        check.verify(token())
    assert store.reads == 1
    clock.now += SECRET_CACHE_SECONDS
    check.verify(token())
    assert store.reads == 2


def test_a_failing_store_does_not_fail_verification_and_is_retried_with_backoff(
    secret: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, arn = secret
    store, clock = Store(client), Clock()
    check = verifier_on(arn, store, clock)
    check.verify(token())
    store.failing = True
    clock.now += SECRET_CACHE_SECONDS

    expected_delay = SECRET_RETRY_FIRST_SECONDS
    for attempt in range(1, 10):
        assert check.verify(token()).subject == "tester", "the cached secret still serves"
        assert store.reads == 1 + attempt
        for _ in range(5):  # within the backoff: no call to the store at all
            check.verify(token())
        assert store.reads == 1 + attempt
        clock.now += expected_delay
        expected_delay = min(expected_delay * 2, SECRET_RETRY_MAX_SECONDS)
    assert expected_delay == SECRET_RETRY_MAX_SECONDS, "the backoff reached its cap"
    assert "serving the cached one" in caplog.text

    store.failing = False
    check.verify(token())
    reads = store.reads
    clock.now += SECRET_CACHE_SECONDS - 1
    check.verify(token())
    assert store.reads == reads, "a success resets the schedule to the cache period"


def test_without_a_cached_secret_a_failing_store_is_503_and_not_called_per_request(
    secret: tuple[Any, str],
) -> None:
    client, arn = secret
    store, clock = Store(client), Clock()
    store.failing = True
    check = verifier_on(arn, store, clock)
    for _ in range(3):
        with pytest.raises(KeyUnavailable) as failed:
            check.verify(token())
        assert failed.value.http_status == 503
    assert store.reads == 1
    clock.now += SECRET_RETRY_FIRST_SECONDS
    store.failing = False
    assert check.verify(token()).subject == "tester"


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_slow_refresh_blocks_no_other_verification(secret: tuple[Any, str]) -> None:
    client, arn = secret
    store, clock = Store(client), Clock()
    check = verifier_on(arn, store, clock)
    check.verify(token())
    clock.now += SECRET_CACHE_SECONDS
    store.gate = threading.Event()
    store.entered.clear()
    refresher, refreshed = in_thread(lambda: check.verify(token()))
    assert store.entered.wait(SAFETY_TIMEOUT_SECONDS), "the refresh is inside the store call"

    # Eight verifications while the refresh hangs in the store: each completes with the
    # cached secret. Were a lock held across the call, they would wait for the gate.
    others = [in_thread(lambda: check.verify(token())) for _ in range(8)]
    for thread, outcome in others:
        thread.join(SAFETY_TIMEOUT_SECONDS)
        assert [claims.subject for claims in outcome] == ["tester"]
    assert refresher.is_alive(), "the refresh is still waiting in the store"
    assert store.reads == 2, "one refresh, not one per request"

    store.gate.set()
    refresher.join(SAFETY_TIMEOUT_SECONDS)
    assert [claims.subject for claims in refreshed] == ["tester"]


def test_the_store_client_has_short_timeouts(aws: None) -> None:
    config = secrets_manager_client().meta.config
    assert config.connect_timeout == SECRET_CONNECT_TIMEOUT_SECONDS
    assert config.read_timeout == SECRET_READ_TIMEOUT_SECONDS
    assert config.retries == {"mode": "standard", "total_max_attempts": SECRET_MAX_ATTEMPTS}
    assert (SECRET_CONNECT_TIMEOUT_SECONDS + SECRET_READ_TIMEOUT_SECONDS) * SECRET_MAX_ATTEMPTS < 29


def test_after_a_rotation_the_previous_secret_is_accepted_for_a_bounded_overlap(
    secret: tuple[Any, str],
) -> None:
    client, arn = secret
    store, clock = Store(client), Clock()
    check = verifier_on(arn, store, clock)
    lifetime = 3 * SECRET_ROTATION_OVERLAP_SECONDS  # the tokens outlive the overlap
    old_token = token(ttl_seconds=lifetime)
    check.verify(old_token)

    client.put_secret_value(SecretId=arn, SecretString=OTHER_SECRET)  # AWSCURRENT moves
    clock.now += SECRET_CACHE_SECONDS
    assert check.verify(token(secret=OTHER_SECRET)).subject == "tester"
    assert check.verify(old_token).subject == "tester", "signed before the rotation"

    clock.now = time.time() + SECRET_ROTATION_OVERLAP_SECONDS + 1
    with pytest.raises(Unauthorized, match="signature"):
        check.verify(old_token)
    assert check.verify(token(secret=OTHER_SECRET, ttl_seconds=lifetime)).subject == "tester"


def test_a_token_of_a_newer_secret_makes_a_container_catch_up_at_a_bounded_rate(
    secret: tuple[Any, str],
) -> None:
    client, arn = secret
    store, clock = Store(client), Clock()
    check = verifier_on(arn, store, clock)
    check.verify(token())
    client.put_secret_value(SecretId=arn, SecretString=OTHER_SECRET)
    new_token = token(secret=OTHER_SECRET)

    # Within the re-read interval the copy is trusted: forged tokens cost no store call.
    clock.now += SECRET_REREAD_AFTER_SECONDS - 1
    for _ in range(3):
        with pytest.raises(Unauthorized):
            check.verify(new_token)
    assert store.reads == 1

    clock.now += 1
    assert check.verify(new_token).subject == "tester", "no 5-minute wait for the rotation"
    assert store.reads == 2
    with pytest.raises(Unauthorized):
        check.verify(token(secret="forged-" + "x" * 40))
    assert store.reads == 2
