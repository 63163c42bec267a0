"""The Event and Cursor parts of the wire contract, as pure functions.

Nothing here touches AWS: validation and encoding are shared by the log, the
transports and the clients, and tested without mocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventlog.config import CHANNEL_PATTERN, MAX_CURSOR, MAX_READ_LIMIT
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
    """Compact JSON; NaN and Infinity are refused because they are not JSON.

    So is a string with a lone surrogate (``"\\ud800"`` parses, but is not Unicode text and
    has no UTF-8 encoding): every transport sends UTF-8, so it could never be delivered.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if not text.isascii():
            text.encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidData(f"data is not a JSON value: {exc}") from None
    except RecursionError:
        # Nesting that json.loads accepted can still be too deep to encode from a deeper stack.
        raise InvalidData("data is not a JSON value: nested too deeply") from None
    return text


def utc_timestamp(now: datetime | None = None) -> str:
    """UTC, ISO 8601 with milliseconds: ``2026-11-28T08:47:00.123Z``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def validate_channel(channel: object) -> str:
    if not isinstance(channel, str) or not CHANNEL_PATTERN.fullmatch(channel):
        raise InvalidChannel(
            "channel must be 1-64 characters of A-Z a-z 0-9 _ . -, and not . or .. "
            f"(got {channel!r:.80})"
        )
    return channel


_CURSOR_DIGITS = len(str(MAX_CURSOR))


def parse_cursor(raw: object) -> int:
    """A cursor is an integer ``seq`` from 0 to ``MAX_CURSOR``, as a number or a decimal string."""
    shape = f"cursor must be a non-negative integer of at most {_CURSOR_DIGITS} digits"
    if isinstance(raw, bool):
        raise InvalidCursor(f"{shape} (got {raw!r})")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= _CURSOR_DIGITS:
        value = int(raw)
    else:
        raise InvalidCursor(f"{shape} (got {raw!r:.40})")
    if not 0 <= value <= MAX_CURSOR:
        # A huge int is described by its size: its decimal string is costly, or refused, to build.
        got = str(value) if value.bit_length() <= 256 else f"{value.bit_length()} bits"
        raise InvalidCursor(f"{shape} (got {got})")
    return value


def validate_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_READ_LIMIT:
        raise InvalidLimit(f"limit must be an integer from 1 to {MAX_READ_LIMIT} (got {limit!r})")
    return limit
