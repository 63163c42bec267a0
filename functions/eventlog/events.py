"""The Event and Cursor parts of the wire contract, as pure functions.

Nothing here touches AWS: validation and encoding are shared by the log, the
transports and the clients, and tested without mocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventlog.config import CHANNEL_PATTERN, MAX_READ_LIMIT
from eventlog.errors import InvalidChannel, InvalidCursor, InvalidData, InvalidLimit


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    seq: int
    data: Any
    time: str

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "seq": self.seq, "data": self.data, "time": self.time}

    def encode(self) -> str:
        """The event's JSON, exactly as every transport sends it."""
        return encode_json(self.to_dict())

    @classmethod
    def decode(cls, raw: str | bytes) -> Event:
        obj = json.loads(raw)
        return cls(channel=obj["channel"], seq=obj["seq"], data=obj["data"], time=obj["time"])


def encode_json(value: Any) -> str:
    """Compact JSON; NaN and Infinity are refused because they are not JSON."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidData(f"data is not a JSON value: {exc}") from None


def utc_timestamp(now: datetime | None = None) -> str:
    """UTC, ISO 8601 with milliseconds: ``2026-11-28T08:47:00.123Z``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def validate_channel(channel: object) -> str:
    if not isinstance(channel, str) or not CHANNEL_PATTERN.fullmatch(channel):
        raise InvalidChannel(
            f"channel must be 1-64 characters of A-Z a-z 0-9 _ . - (got {channel!r:.80})"
        )
    return channel


def parse_cursor(raw: object) -> int:
    """A cursor is a non-negative integer ``seq``, given as a number or a decimal string."""
    if isinstance(raw, bool):
        raise InvalidCursor(f"cursor must be a non-negative integer (got {raw!r})")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        value = int(raw)
    else:
        raise InvalidCursor(f"cursor must be a non-negative integer (got {raw!r:.40})")
    if value < 0:
        raise InvalidCursor(f"cursor must be a non-negative integer (got {value})")
    return value


def validate_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_READ_LIMIT:
        raise InvalidLimit(f"limit must be an integer from 1 to {MAX_READ_LIMIT} (got {limit!r})")
    return limit
