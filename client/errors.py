"""One error type for every refusal, whichever transport it came over.

A polling or SSE refusal is an RFC 9457 problem (``status``, ``code``, ``detail``);
a WebSocket refusal is an ``error`` frame (``code``, ``message``, no status). Both
become a ``ClientError`` with the same ``code`` the event log uses
(``eventlog.errors``), so code that handles ``event_too_large`` does it once.
Input the client can check itself (a channel name, a value that is not JSON) is
refused before anything is sent, with the status and code the server would use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus

from eventlog.errors import EventLogError

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Statuses after which the same request may succeed later. A subscription retries them;
a publish only retries 429 and 503, the two that promise nothing was written."""

NOTHING_WRITTEN_STATUSES = frozenset({429, 503})

RETRYABLE_CODES = frozenset({"unreachable", "connection_lost", "timeout"})
"""Failures without a status (the network, not the service) that a retry may heal."""


class ClientError(Exception):
    """A request the service refused, or a failure the client cannot recover from by itself.

    ``status`` is the HTTP status (None for WebSocket frames and client-side failures),
    ``code`` the machine-readable reason, ``retry_after`` the server's hint in seconds.
    """

    def __init__(
        self,
        *,
        status: int | None,
        code: str,
        detail: str,
        retry_after: float | None = None,
    ) -> None:
        # "HTTP 403 forbidden: ..." when the service answered; "connection_lost: ..." when not.
        super().__init__(f"{f'HTTP {status} ' if status else ''}{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return self.code in RETRYABLE_CODES
        return self.status in RETRYABLE_STATUSES

    @classmethod
    def refused_locally(cls, exc: EventLogError) -> ClientError:
        """Input refused before sending, with the status and code the server would answer."""
        return cls(status=exc.http_status, code=exc.code, detail=exc.message)

    @classmethod
    def from_http(cls, *, status: int, headers: Mapping[str, str], body: bytes) -> ClientError:
        """An error response: its problem body if it has one, else the status alone."""
        code = f"http_{status}"
        try:
            detail = HTTPStatus(status).phrase
        except ValueError:
            detail = "unexpected status"
        try:
            problem = json.loads(body) if body else None
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            if isinstance(problem.get("code"), str):
                code = problem["code"]
            if isinstance(problem.get("detail"), str):
                detail = problem["detail"]
            elif isinstance(problem.get("message"), str):  # API Gateway's own refusals
                detail = problem["message"]
        return cls(
            status=status,
            code=code,
            detail=detail,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )


class MissingEndpoint(ValueError):
    """The endpoints file has no URL for the transport asked for."""


def parse_retry_after(raw: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds, or an HTTP date (RFC 9110 10.2.3)."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        return float(raw)
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def unreachable(exc: BaseException, *, url: object = None) -> ClientError:
    """No connection could be made to ``url``: nothing was sent."""
    where = f" to {url}" if url else ""
    return ClientError(
        status=None,
        code="unreachable",
        detail=f"cannot connect{where} ({type(exc).__name__}: {exc})",
    )


CLOSE_CODES = {
    1000: "closed normally",
    1001: "the server is going away",
    1003: "data the server does not accept (API Gateway refuses binary frames)",
    1006: "closed without a close frame (the network, or a process that died)",
    1008: "a policy violation",
    1009: "a message too big (API Gateway: frames over 32 KB, messages over 128 KB)",
    1011: "an error in the server",
    1012: "the server is restarting",
    1013: "try again later",
}
"""What a WebSocket close code means here (RFC 6455, section 7.4.1)."""


def close_cause(code: int | None, reason: str | None) -> str:
    """``close 1009: a message too big (...): frame exceeds ...``, for an error's detail."""
    if code is None:
        return ""
    meaning = CLOSE_CODES.get(code, "an unlisted close code")
    return f"close {code}, {meaning}" + (f": {reason}" if reason else "")


def connection_lost(exc: BaseException | None, *, what: str, close: str = "") -> ClientError:
    """The connection broke after ``what`` was sent: it may or may not have been carried out.

    ``close`` says how, when the server closed it (``close_cause``).
    """
    cause = f" ({close})" if close else "" if exc is None else f" ({type(exc).__name__}: {exc})"
    return ClientError(
        status=None,
        code="connection_lost",
        detail=f"the connection broke before {what} was answered{cause}; "
        "it may or may not have been carried out",
    )


def protocol_error(detail: str) -> ClientError:
    """The service sent something this client cannot read."""
    return ClientError(status=None, code="protocol_error", detail=detail)
