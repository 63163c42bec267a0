"""Typed rejections of the event log.

Each carries a machine-readable ``code`` (the WebSocket ``error`` frame's ``code``
and the ``type`` suffix of an RFC 9457 problem) and the HTTP status every HTTP
transport answers with, so the three transports cannot disagree about what a
rejection means.
"""

from __future__ import annotations

from eventlog.config import RETRY_AFTER_SECONDS


class EventLogError(Exception):
    """A request the event log refuses; nothing was written."""

    code = "bad_request"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """Response headers an HTTP transport sends with this refusal."""
        return {}


class InvalidChannel(EventLogError):
    code = "invalid_channel"


class InvalidCursor(EventLogError):
    code = "invalid_cursor"


class InvalidLimit(EventLogError):
    code = "invalid_limit"


class InvalidData(EventLogError):
    code = "invalid_data"
    http_status = 422


class EventTooLarge(EventLogError):
    code = "event_too_large"
    http_status = 413


class PublishContention(EventLogError):
    """Too many publishers raced for one channel; the caller may retry later."""

    code = "publish_contention"
    http_status = 503


class Throttled(EventLogError):
    """DynamoDB refused the request for capacity; nothing was written, the client may retry.

    429 with ``Retry-After`` over HTTP (RFC 6585), a ``throttled`` error frame on WebSocket.
    """

    code = "throttled"
    http_status = 429

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


_THROTTLING_CODES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}
)
_THROTTLING_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})


def is_throttling(exc: BaseException) -> bool:
    """A DynamoDB capacity refusal (after botocore's own retries gave up), told by its code."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = response.get("Error", {}).get("Code")
    if code == "TransactionCanceledException":
        reasons = response.get("CancellationReasons") or []
        return any(reason.get("Code") in _THROTTLING_REASONS for reason in reasons)
    return code in _THROTTLING_CODES


class Unauthorized(EventLogError):
    """No token, or one that is malformed, wrongly signed or expired: 401.

    The challenge follows RFC 6750: ``error="invalid_token"`` once a token was sent,
    so a client can tell "log in" from "get a fresh token".
    """

    code = "unauthorized"
    http_status = 401

    def __init__(self, message: str, *, token_sent: bool = True) -> None:
        super().__init__(message)
        self.token_sent = token_sent

    @property
    def headers(self) -> dict[str, str]:
        challenge = 'Bearer realm="realtime"'
        if self.token_sent:
            challenge += ', error="invalid_token"'
        return {"WWW-Authenticate": challenge}


class Forbidden(EventLogError):
    """A valid token that does not grant this scope on this channel: 403."""

    code = "forbidden"
    http_status = 403

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="realtime", error="insufficient_scope"'}
