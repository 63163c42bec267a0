"""Stream disorder: late and out of order across batches, within its bounds, replayable."""

from __future__ import annotations

from typing import Any

import pytest

from local.stream_disorder import DisorderedStream
from tests.test_local_stream_mapping import SHARD, FakeStream, Function, mapping_for, stream_record

MAX_DELAY = 3


def channel_pages(pages: int, per_page: int) -> list[list[dict[str, Any]] | Exception]:
    """Pages of records alternating between two channels, sequence numbers from 1."""
    result: list[list[dict[str, Any]] | Exception] = []
    for first in range(1, pages * per_page + 1, per_page):
        page = [stream_record(n) for n in range(first, first + per_page)]
        for record in page:
            number = int(record["dynamodb"]["SequenceNumber"])
            record["dynamodb"]["Keys"]["channel"] = {"S": "ab"[number % 2]}
        result.append(page)
    return result


def polls(stream: DisorderedStream, count: int) -> list[list[int]]:
    """The sequence numbers each of ``count`` polls of the one shard delivers."""
    iterator = stream.get_shard_iterator(ShardId=SHARD, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    delivered = []
    for _ in range(count):
        page = stream.get_records(ShardIterator=iterator, Limit=100)
        iterator = page["NextShardIterator"]
        delivered.append([int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]])
    return delivered


def test_records_arrive_late_and_out_of_order_but_each_once_and_within_bounds() -> None:
    pages = channel_pages(pages=6, per_page=5)
    delivered = polls(DisorderedStream(FakeStream(pages), seed=7, max_delay_polls=MAX_DELAY), 12)

    flat = [n for batch in delivered for n in batch]
    assert sorted(flat) == list(range(1, 31))  # each record exactly once
    assert all(batch == sorted(batch) for batch in delivered)  # a batch keeps stream order
    assert flat != sorted(flat)  # but some record came after a later one
    for n in flat:
        read_at = (n - 1) // 5 + 1  # the poll that read it from the stream
        delivered_at = next(i for i, batch in enumerate(delivered, start=1) if n in batch)
        assert read_at <= delivered_at <= read_at + MAX_DELAY
    # One channel's records, read in one page, reached the function in several batches.
    first_page_a = [n for n in range(1, 6) if n % 2 == 0]
    assert len({i for i, batch in enumerate(delivered) for n in batch if n in first_page_a}) > 1


def test_the_same_seed_replays_the_same_disorder() -> None:
    def run(seed: int) -> list[list[int]]:
        return polls(DisorderedStream(FakeStream(channel_pages(4, 5)), seed=seed), 8)

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_the_mapping_delivers_every_record_once_through_disorder() -> None:
    function = Function()
    stream = DisorderedStream(FakeStream(channel_pages(5, 4)), seed=3)
    mapping = mapping_for(function, stream)

    for _ in range(5 + MAX_DELAY):
        mapping.poll()

    flat = [int(n) for batch in function.batches for n in batch]
    assert sorted(flat) == list(range(1, 21))
    assert flat != sorted(flat)
    assert mapping.on_failure == []


@pytest.mark.parametrize("options", [{"max_delay_polls": 0}, {"hold_share": 1.5}])
def test_bounds_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="max_delay_polls"):
        DisorderedStream(FakeStream([]), seed=1, **options)


def test_the_switch_and_the_banner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventlog import endpoints
    from local.__main__ import parse_args
    from local.stack import print_banner

    assert parse_args([]).stream_disorder_seed is None  # orderly unless asked
    monkeypatch.setenv("LOCAL_STREAM_DISORDER", "5")
    assert parse_args([]).stream_disorder_seed == 5
    config = parse_args(["--stream-disorder", "42", "--auth", "off"])
    assert config.stream_disorder_seed == 42

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8005")
    print_banner({endpoints.EDGE_STACK: {endpoints.DEMO_URL: "http://127.0.0.1:8000/"}}, config)
    assert "disordered, seed 42" in capsys.readouterr().out
