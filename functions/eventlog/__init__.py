"""The event log shared by every transport: see ``eventlog.log`` for its guarantees."""

from eventlog.errors import (
    EventLogError,
    EventTooLarge,
    InvalidChannel,
    InvalidCursor,
    InvalidData,
    InvalidLimit,
    PublishContention,
)
from eventlog.events import Event
from eventlog.log import EventLog, ReadResult, default_log

__all__ = [
    "Event",
    "EventLog",
    "EventLogError",
    "EventTooLarge",
    "InvalidChannel",
    "InvalidCursor",
    "InvalidData",
    "InvalidLimit",
    "PublishContention",
    "ReadResult",
    "default_log",
]
