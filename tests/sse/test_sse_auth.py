"""The SSE service's token check: refusals before a stream opens, and streams that expire."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from auth.claims import grant
from auth.tokens import issue_token
from eventlog.config import Settings
from eventlog.log import EventLog
from eventlog.problems import PROBLEM_CONTENT_TYPE
from sse_service.app import create_app, token_gate
from sse_service.settings import ServiceSettings
from tests.auth_support import TEST_SECRET, bad_tokens, bearer, good_tokens, verifier
from tests.sse_support import LiveServer, SseClient

FAST: dict[str, Any] = {"reader_interval_seconds": 0.02, "drain_seconds": 0.2}
STREAM = "/channels/news/stream"


class Unreachable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the table was reached ({name}) by a refused stream")


@pytest.fixture(scope="module")
def refusing() -> Iterator[LiveServer]:
    """One service for every refusal: a refused stream never reaches the log."""
    log = EventLog(settings=Settings(events_table_name="events"), client=Unreachable())
    app = create_app(log=log, settings=ServiceSettings(**FAST), gate=token_gate(verifier()))
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def service(log: EventLog) -> Iterator[LiveServer]:
    app = create_app(log=log, settings=ServiceSettings(**FAST), gate=token_gate(verifier()))
    with LiveServer(app) as server:
        yield server


def with_token(path: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}token={quote(value)}"


def assert_refused(client: SseClient, status: int, code: str) -> None:
    assert client.status == status
    assert client.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert client.json()["code"] == code
    assert client.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize("name", list(bad_tokens("subscribe")))
def test_refusals(refusing: LiveServer, name: str) -> None:
    value, status, code = bad_tokens("subscribe")[name]
    headers = bearer(value) if value else {}
    with SseClient(refusing.port, STREAM, headers=headers) as client:
        assert_refused(client, status, code)
    if value:  # as a browser's EventSource sends it
        with SseClient(refusing.port, with_token(STREAM, value)) as client:
            assert_refused(client, status, code)


def test_a_token_is_checked_before_the_channel_and_the_cursor(refusing: LiveServer) -> None:
    for path in ("/channels/bad%20name/stream", f"{STREAM}?after=soon"):
        with SseClient(refusing.port, path) as client:
            assert_refused(client, 401, "unauthorized")
    with SseClient(refusing.port, STREAM, headers={"Authorization": "Basic eA=="}) as client:
        assert_refused(client, 401, "unauthorized")


def test_health_and_preflight_need_no_token(refusing: LiveServer) -> None:
    with SseClient(refusing.port, "/healthz") as health:
        assert health.status == 200
    preflight = {
        "Origin": "http://demo.test",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, last-event-id",
    }
    with SseClient(refusing.port, STREAM, headers=preflight, method="OPTIONS") as client:
        assert client.status == 200
        assert "authorization" in client.headers["access-control-allow-headers"].lower()


def test_grants(service: LiveServer, log: EventLog) -> None:
    event = log.publish("news", "hello")
    from_start = f"{STREAM}?after=0"
    for name, value in good_tokens("subscribe").items():
        for path, headers in ((from_start, bearer(value)), (with_token(from_start, value), {})):
            with SseClient(service.port, path, headers=headers) as client:
                assert client.status == 200, name
                [received] = client.events(1)
                assert received.json() == event.to_dict()


def test_a_stream_ends_with_expired_when_its_token_does_and_a_fresh_one_resumes(
    service: LiveServer, log: EventLog
) -> None:
    channel = [grant("news", "subscribe")]
    short = issue_token(secret=TEST_SECRET, subject="a", grants=channel, ttl_seconds=2)
    first = log.publish("news", 1)
    with SseClient(service.port, with_token(f"{STREAM}?after=0", short.token)) as client:
        assert client.status == 200
        messages = list(client.messages(until=time.monotonic() + 5))
        assert client.ended_cleanly
    ended = time.time()
    assert [m.json() for m in messages if m.data and m.event is None] == [first.to_dict()]
    assert messages[-1].event == "expired"
    assert ended >= short.expires_at  # not before the token's exp
    print(f"the stream ended {ended - short.expires_at:.3f} s after the token's exp")
    # The same token again: refused, so a client cannot loop on it.
    with SseClient(service.port, with_token(STREAM, short.token)) as client:
        assert_refused(client, 401, "unauthorized")
    second = log.publish("news", 2)
    fresh = issue_token(secret=TEST_SECRET, subject="a", grants=channel, ttl_seconds=60)
    resume = {"Last-Event-ID": str(first.seq)}
    with SseClient(service.port, with_token(STREAM, fresh.token), headers=resume) as client:
        assert [m.json() for m in client.events(1)] == [second.to_dict()]


def test_with_auth_off_the_service_says_so_and_streams_without_a_token(
    log: EventLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AUTH_MODE", "off")
    app = create_app(log=log, settings=ServiceSettings(**FAST))  # the default gate, from env
    assert "AUTH IS OFF" in caplog.text
    with LiveServer(app) as server, SseClient(server.port, STREAM) as client:
        assert client.status == 200
