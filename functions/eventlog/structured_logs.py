"""Structured logs: the fields an operator searches by, and never a token.

On Lambda the functions log with Lambda's JSON log format (``LoggingFormat.JSON``, set
in ``infra``): the runtime writes each record as one JSON object with ``timestamp``,
``level``, ``message``, ``logger`` and ``requestId`` (the invocation's
``aws_request_id``), and adds every attribute passed with ``extra=`` as a key of its
own. The SSE service, a container whose standard output the awslogs driver sends to
CloudWatch, writes the same shape with ``JsonFormatter``; so one Logs Insights query
(``filter channel = "news" and outcome != "ok"``) reads every transport.

``fields`` builds that ``extra`` with the names below and nothing else: typed values,
never an event, a header or a query string, which is where tokens travel (browsers put
them in query strings). As a second line of defence a JWT-shaped string becomes
``[token]``: in a field (``fields`` redacts), and in a message or its arguments
(``install`` wraps the log record factory, so before any handler, Lambda's, uvicorn's or
a test's, formats it). Event bodies
are not logged at all: a record says which seq, not what it held.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

Transport = Literal["polling", "websocket", "sse"]

# The field names, once: Logs Insights queries and the tests use the same.
REQUEST_ID = "request_id"
"""The id the client-facing service gave the request: API Gateway's ``requestContext.requestId``,
or the load balancer's ``X-Amzn-Trace-Id`` for SSE. (Lambda adds its own ``requestId``.)"""
CHANNEL = "channel"
SEQ = "seq"
CONNECTION_ID = "connection_id"
TRANSPORT = "transport"
OUTCOME = "outcome"
FIELDS = (REQUEST_ID, CHANNEL, SEQ, CONNECTION_ID, TRANSPORT, OUTCOME)

REDACTED = "[token]"
# A JWT: three base64url parts, the first a JSON object ("eyJ" is base64 for '{"').
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def fields(
    *,
    transport: Transport,
    outcome: str | None = None,
    request_id: str | None = None,
    channel: str | None = None,
    seq: int | None = None,
    connection_id: str | None = None,
    **counts: int | float,
) -> dict[str, Any]:
    """The ``extra`` of a log record: the fields that are known, and counts (``events=3``)."""
    known = {
        TRANSPORT: transport,
        OUTCOME: outcome,
        REQUEST_ID: request_id,
        CHANNEL: channel,
        SEQ: seq,
        CONNECTION_ID: connection_id,
    }
    # The one door for extra=: the record factory below runs before extra is applied.
    return {
        key: redact(value) if isinstance(value, str) else value
        for key, value in {**known, **counts}.items()
        if value is not None
    }


def redact(text: str) -> str:
    """``text`` with every JWT-shaped part replaced by ``[token]``."""
    return _JWT.sub(REDACTED, text) if "eyJ" in text else text


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def extra_of(record: logging.LogRecord) -> dict[str, Any]:
    """The attributes a record got through ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


_installed = False


def install() -> None:
    """Redact tokens from every log record this process creates (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    create = logging.getLogRecordFactory()

    def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = create(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record  # a bad format string: the handler reports it, as without this
        if "eyJ" in message:
            record.msg, record.args = redact(message), None
        return record

    logging.setLogRecordFactory(redacting)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, shaped as Lambda's JSON log format writes it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "message": redact(record.getMessage()),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["errorType"] = record.exc_info[0].__name__
            entry["errorMessage"] = redact(str(record.exc_info[1]))
            entry["stackTrace"] = traceback.format_tb(record.exc_info[2])
        entry.update(extra_of(record))
        return json.dumps(entry, default=str, separators=(",", ":"))


class ReadableFormatter(logging.Formatter):
    """``time logger message`` and the record's fields as ``key=value``: for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra: Mapping[str, Any] = extra_of(record)
        if extra:
            text += " [" + " ".join(f"{k}={v}" for k, v in extra.items()) + "]"
        return redact(text)
