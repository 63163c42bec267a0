"""The pure half of the contract: validation and encoding, no AWS involved."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from eventlog import Event, InvalidChannel, InvalidCursor, InvalidData, InvalidLimit
from eventlog.events import (
    encode_json,
    parse_cursor,
    utc_timestamp,
    validate_channel,
    validate_limit,
)


@pytest.mark.parametrize("channel", ["a", "news", "A-Z_a.z-0", "x" * 64, "...", ".a", "a.."])
def test_valid_channels(channel: str) -> None:
    assert validate_channel(channel) == channel


@pytest.mark.parametrize(
    "channel", ["", "x" * 65, "has space", "slash/", "é", "a\n", None, 7, ".", ".."]
)
def test_invalid_channels(channel: object) -> None:
    with pytest.raises(InvalidChannel, match="1-64 characters"):
        validate_channel(channel)


@pytest.mark.parametrize(
    ("raw", "value"),
    [(0, 0), ("0", 0), ("42", 42), (7, 7), (10**38 - 1, 10**38 - 1), ("9" * 38, 10**38 - 1)],
)
def test_cursors(raw: object, value: int) -> None:
    assert parse_cursor(raw) == value


@pytest.mark.parametrize(
    "raw", [-1, "-1", "1.5", "abc", "", True, None, 1.0, "\u0661", "9" * 39, 10**38, 10**4000]
)
def test_bad_cursors(raw: object) -> None:
    with pytest.raises(InvalidCursor, match="non-negative integer"):
        parse_cursor(raw)


@pytest.mark.parametrize("limit", [0, 101, -1, True])
def test_bad_limits(limit: int) -> None:
    with pytest.raises(InvalidLimit, match="1 to 100"):
        validate_limit(limit)


def test_timestamp_is_utc_iso_with_milliseconds() -> None:
    moment = datetime(2026, 11, 28, 8, 47, 0, 123999, tzinfo=UTC)
    assert utc_timestamp(moment) == "2026-11-28T08:47:00.123Z"


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, {1, 2}, object(), "\ud800", {"k": ["\udfff"]}]
)
def test_non_json_data_is_refused(value: object) -> None:
    with pytest.raises(InvalidData, match="not a JSON value"):
        encode_json(value)


def test_event_round_trips_through_its_encoding() -> None:
    event = Event(channel="news", seq=17, data={"any": ["json", 1, None]}, time="t")
    encoded = event.encode()
    assert json.loads(encoded) == {
        "channel": "news",
        "seq": 17,
        "data": {"any": ["json", 1, None]},
        "time": "t",
    }
    assert Event.decode(encoded) == event
