"""The event log shared by every transport: see ``eventlog.log`` for its guarantees."""

from eventlog.errors import (
    EventLogError,
    EventTooLarge,
    Forbidden,
    InvalidChannel,
    InvalidCursor,
    InvalidData,
    InvalidLimit,
    PublishContention,
    Unauthorized,
)
from eventlog.events import Event
from eventlog.log import EventLog, ReadResult, default_log

__all__ = [
    "Event",
    "EventLog",
    "EventLogError",
    "EventTooLarge",
    "Forbidden",
    "InvalidChannel",
    "InvalidCursor",
    "InvalidData",
    "InvalidLimit",
    "PublishContention",
    "ReadResult",
    "Unauthorized",
    "default_log",
]
