"""The HS256 signing secret from Secrets Manager: cached, refreshed off the lock, rotation-aware.

The secret store is a network call away, so every verification must not depend on it.
What this cache guarantees, and how:

- *A store that fails does not fail verification.* Once a secret has been read, it is
  served until a read succeeds again, however long the store is down. A failed read is
  retried after a backoff that doubles from ``SECRET_RETRY_FIRST_SECONDS`` to
  ``SECRET_RETRY_MAX_SECONDS``, so a down store gets one call per container per backoff
  interval, not one per request.
- *No request waits behind a slow read.* One thread reads; the lock guards only the
  cache's fields and is never held across the call. While the read runs, every other
  verification uses the cached secret. Only the very first read of a container has
  nothing to fall back on: other requests wait for it (on an event, at most as long as
  the client's timeouts allow), then fail with ``SecretUnavailable`` if it failed.
- *Short timeouts.* The boto3 client connects within ``SECRET_CONNECT_TIMEOUT_SECONDS``,
  reads within ``SECRET_READ_TIMEOUT_SECONDS`` and tries ``SECRET_MAX_ATTEMPTS`` times,
  instead of botocore's 60 s defaults: an authorizer has 29 s, a request less.
- *Rotation without 401s.* Secrets Manager keeps the version that was current before
  the last rotation under the label ``AWSPREVIOUS`` (AWS: "Whenever you move AWSCURRENT,
  Secrets Manager automatically moves the label AWSPREVIOUS to the version that
  AWSCURRENT was removed from",
  https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_UpdateSecretVersionStage.html).
  Tokens signed with it are accepted for ``SECRET_ROTATION_OVERLAP_SECONDS`` after the
  current version was created (``CreatedDate`` of ``GetSecretValue``,
  https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html),
  so tokens issued just before a rotation stay valid while they live, and no longer.
  In the other direction, a token that no cached version verifies makes the cache read
  the store again (``reread``) if its copy is older than
  ``SECRET_REREAD_AFTER_SECONDS``: a container that has not yet seen a rotation catches
  up on the first token signed with the new secret, not up to 5 minutes later. That
  re-read is rate limited, so forged tokens cannot turn into calls to the store.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auth.config import (
    MIN_SECRET_BYTES,
    SECRET_CACHE_SECONDS,
    SECRET_CONNECT_TIMEOUT_SECONDS,
    SECRET_MAX_ATTEMPTS,
    SECRET_READ_TIMEOUT_SECONDS,
    SECRET_REREAD_AFTER_SECONDS,
    SECRET_RETRY_FIRST_SECONDS,
    SECRET_RETRY_MAX_SECONDS,
    SECRET_ROTATION_OVERLAP_SECONDS,
)

logger = logging.getLogger(__name__)

FIRST_READ_WAIT_SECONDS = SECRET_MAX_ATTEMPTS * (
    SECRET_CONNECT_TIMEOUT_SECONDS + SECRET_READ_TIMEOUT_SECONDS
)
"""Longest a request waits for another thread's first read: what its client may take."""


class SecretUnavailable(Exception):
    """No secret has been read yet, and the store cannot be read now."""


@dataclass(frozen=True, kw_only=True)
class SecretVersions:
    """The current secret, and the previous one with the moment it stops being accepted."""

    current: bytes
    previous: bytes | None = None
    previous_until: float = 0.0

    def accepted(self, now: float) -> tuple[bytes, ...]:
        """The secrets a token may be signed with at ``now``, current first."""
        if self.previous is not None and now < self.previous_until:
            return (self.current, self.previous)
        return (self.current,)


def secrets_manager_client() -> Any:
    """A Secrets Manager client with short timeouts (see the module docstring)."""
    import boto3  # on first use: importing it costs a cold start more than it needs
    from botocore.config import Config

    return boto3.client(
        "secretsmanager",
        config=Config(
            connect_timeout=SECRET_CONNECT_TIMEOUT_SECONDS,
            read_timeout=SECRET_READ_TIMEOUT_SECONDS,
            retries={"mode": "standard", "total_max_attempts": SECRET_MAX_ATTEMPTS},
        ),
    )


class SecretCache:
    """One container's copy of the secret named ``secret_id``; thread-safe."""

    def __init__(
        self,
        *,
        secret_id: str,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret_id = secret_id
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below; never held across a call
        self._versions: SecretVersions | None = None
        self._read_at = -math.inf  # when the cached versions were read
        self._retry_at = -math.inf  # no read before this, after a failed one
        self._failures = 0
        self._reading: threading.Event | None = None  # set when the read in progress ends

    def get(self) -> SecretVersions:
        """The cached versions, read again once they are ``SECRET_CACHE_SECONDS`` old."""
        return self._obtain(max_age=SECRET_CACHE_SECONDS)

    def reread(self) -> SecretVersions:
        """The versions, read again if the copy is ``SECRET_REREAD_AFTER_SECONDS`` old.

        For a token that no cached version verifies: the secret may have been rotated.
        """
        return self._obtain(max_age=SECRET_REREAD_AFTER_SECONDS)

    def _obtain(self, *, max_age: float) -> SecretVersions:
        now = self._clock()
        mine: threading.Event | None = None
        other: threading.Event | None = None
        with self._lock:
            versions = self._versions
            if now - self._read_at >= max_age and now >= self._retry_at:
                if self._reading is None:
                    mine = self._reading = threading.Event()
                elif versions is None:
                    other = self._reading
        if mine is not None:
            versions = self._read(mine, now)
        elif other is not None:
            other.wait(FIRST_READ_WAIT_SECONDS)
            with self._lock:
                versions = self._versions
        if versions is None:
            raise SecretUnavailable("the signing secret has not been read yet")
        return versions

    def _read(self, done: threading.Event, now: float) -> SecretVersions | None:
        try:
            fetched = self._fetch()
        except Exception as exc:
            with self._lock:
                self._failures += 1
                delay = min(
                    SECRET_RETRY_MAX_SECONDS, SECRET_RETRY_FIRST_SECONDS * 2 ** (self._failures - 1)
                )
                self._retry_at = now + delay
                self._reading = None
                versions = self._versions
            done.set()
            fallback = "serving the cached one" if versions is not None else "none cached"
            logger.error(
                "cannot read the signing secret (%s); %s; next try in %.0f s", exc, fallback, delay
            )
            return versions
        with self._lock:
            self._versions = fetched
            self._read_at = now
            self._failures = 0
            self._retry_at = -math.inf
            self._reading = None
        done.set()
        return fetched

    def _fetch(self) -> SecretVersions:
        if self._client is None:
            self._client = secrets_manager_client()
        current = self._client.get_secret_value(SecretId=self.secret_id)
        try:
            previous = self._client.get_secret_value(
                SecretId=self.secret_id, VersionStage="AWSPREVIOUS"
            )
        except Exception as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            previous = None  # never rotated
        created = current.get("CreatedDate")
        return SecretVersions(
            current=_secret_bytes(current),
            previous=None if previous is None else _secret_bytes(previous),
            previous_until=0.0
            if created is None
            else created.timestamp() + SECRET_ROTATION_OVERLAP_SECONDS,
        )


def _secret_bytes(value: Any) -> bytes:
    secret = value.get("SecretString")
    if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the signing secret is not a string of {MIN_SECRET_BYTES}+ bytes")
    return secret.encode()


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
