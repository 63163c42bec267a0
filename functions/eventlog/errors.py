"""Typed rejections of the event log.

Each carries a machine-readable ``code`` (the WebSocket ``error`` frame's ``code``
and the ``type`` suffix of an RFC 9457 problem) and the HTTP status every HTTP
transport answers with, so the three transports cannot disagree about what a
rejection means.
"""

from __future__ import annotations


class EventLogError(Exception):
    """A request the event log refuses; nothing was written."""

    code = "bad_request"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
