"""The hub without HTTP: the join race, and one reader per channel while it has subscribers."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import pytest

from eventlog import EventLog, ReadResult
from eventlog.config import (
    MAX_READ_LIMIT,
    SEQ_ABANDONED_AFTER_SECONDS,
    SSE_HEARTBEAT_SECONDS,
    Settings,
)
from sse_service.broker import BrokerLink
from sse_service.hub import Hub
from sse_service.settings import SSE_QUEUE_BYTES, SSE_WRITE_SLICE_BYTES

pytestmark = pytest.mark.anyio

_IDS = re.compile(rb"^id: (\d+)\ndata: ", re.MULTILINE)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GatedLog(EventLog):
    """Holds the first read after ``gate_after`` until released: the join race, widened.

    ``hold="before"`` holds it before the query (so it returns the events published
    meanwhile too, which the feed also queued: the duplicates); ``hold="after"`` holds
    its result (so it misses them: only the queue has them).
    """

    def __init__(self, *, gate_after: int, hold: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate_after = gate_after
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()

    def read(self, channel: str, after: int, limit: int = MAX_READ_LIMIT) -> ReadResult:
        if after != self.gate_after or self.entered.is_set():
            return super().read(channel, after, limit)
        result = super().read(channel, after, limit) if self.hold == "after" else None
        self.entered.set()
        assert self.release.wait(10)
        return result or super().read(channel, after, limit)


def make_hub(
    log: EventLog, *, broker: BrokerLink | None = None, reader_interval_seconds: float = 0.01
) -> Hub:
    return Hub(
        log=log,
        queue_bytes=SSE_QUEUE_BYTES,
        write_slice_bytes=SSE_WRITE_SLICE_BYTES,
        reader_interval_seconds=reader_interval_seconds,
        drain_seconds=0,
        retry_milliseconds=1_000,
        heartbeat_seconds=SSE_HEARTBEAT_SECONDS,
        broker=broker,
    )


async def seqs_until(stream: AsyncIterator[bytes], last: int) -> list[int]:
    """Event seqs from a stream's chunks until ``last`` has arrived."""
    seen: list[int] = []
    while not seen or seen[-1] < last:
        with anyio.fail_after(5):
            chunk = await anext(stream)
        seen += [int(match) for match in _IDS.findall(chunk)]
    return seen


async def publish(log: EventLog, channel: str, count: int) -> None:
    for n in range(count):
        await anyio.to_thread.run_sync(log.publish, channel, n)


@pytest.mark.parametrize("hold", ["before", "after"])
async def test_a_joiner_gets_backlog_then_live_with_nothing_missed_or_repeated(
    dynamodb: Any, events_table: str, hold: str
) -> None:
    settings = Settings(events_table_name=events_table)
    log = GatedLog(gate_after=2, hold=hold, settings=settings, client=dynamodb)
    hub = make_hub(log)
    await publish(log, "race", 5)

    # A live subscriber keeps the channel's feed running at position 5.
    watcher_stream = hub.stream(hub.admit("race"), cursor=None)
    assert b"id: 5\n" in await anext(watcher_stream)

    # A client resumes after 2; its backlog read is held while the feed moves on.
    joiner_stream = hub.stream(hub.admit("race"), cursor=2)
    assert await anext(joiner_stream) == b"retry: 1000\n\n"
    joined = asyncio.create_task(seqs_until(joiner_stream, 10))
    await anyio.to_thread.run_sync(log.entered.wait)
    await publish(log, "race", 3)  # 6..8: handed out by the feed during the backlog read
    assert await seqs_until(watcher_stream, 8) == [6, 7, 8]

    log.release.set()  # the backlog returns 3..8 or 3..5; the queue already has 6..8
    await publish(log, "race", 2)
    assert await joined == [3, 4, 5, 6, 7, 8, 9, 10]
    assert len(hub.feeds) == 1
    await watcher_stream.aclose()
    await joiner_stream.aclose()
    await hub.aclose()


async def test_one_reader_per_channel_and_only_while_it_has_subscribers(
    log: EventLog,
) -> None:
    hub = make_hub(log)
    streams = [hub.stream(hub.admit("shared"), cursor=None) for _ in range(20)]
    for stream in streams:
        await anext(stream)
    assert list(hub.feeds) == ["shared"]
    reads_before = hub.stats["log_reads"]
    await anyio.sleep(0.2)
    polls = hub.stats["log_reads"] - reads_before
    print(f"20 subscribers, 0.2 s at a 0.01 s interval: {polls} reads of the log")
    assert 0 < polls <= 0.2 / 0.01 + 2  # one reader, not one per subscriber

    await publish(log, "shared", 1)
    for stream in streams:
        assert await seqs_until(stream, 1) == [1]
    for stream in streams:
        await stream.aclose()
    await anyio.sleep(0.05)  # the feed notices at its next turn that nobody is left
    assert hub.feeds == {}
    reads_after_last_leaves = hub.stats["log_reads"]
    await anyio.sleep(0.1)
    assert hub.stats["log_reads"] == reads_after_last_leaves


async def test_a_stream_expires_at_its_deadline_even_when_a_timer_fires_early(
    log: EventLog,
) -> None:
    hub = make_hub(log)
    subscriber = hub.admit("news")
    readings: list[float] = []
    # The wall clock as the timers see it: at scheduling 50 ms before the deadline, at
    # the first firing still 1 ms before it (the timer fired early), then at the deadline.
    times = iter([1_000.0, 1_000.049, 1_000.05])

    def clock() -> float:
        readings.append(next(times))
        return readings[-1]

    hub.expire_at(subscriber, expires_at=1_000.05, clock=clock)
    with anyio.fail_after(5):
        while subscriber.reason is None:
            await subscriber.wait()
    assert subscriber.reason == "expired"
    assert readings == [1_000.0, 1_000.049, 1_000.05], "the early firing waited out the rest"
    hub.leave(subscriber)


async def test_a_hole_holds_streams_back_until_it_is_written_or_filled(
    dynamodb: Any, events_table: str
) -> None:
    now = [1_800_000_000.0]
    log = EventLog(
        settings=Settings(events_table_name=events_table), client=dynamodb, clock=lambda: now[0]
    )
    hub = make_hub(log)
    await publish(log, "holes", 1)
    watcher = hub.stream(hub.admit("holes"), cursor=None)
    assert b"id: 1\n" in await anext(watcher)

    # A publisher takes seq 2 and dies before writing it; seq 3 is written.
    await anyio.to_thread.run_sync(log._take_seq, "holes")
    await publish(log, "holes", 1)
    next_chunk = asyncio.ensure_future(anext(watcher))
    await anyio.sleep(0.1)
    assert not next_chunk.done()  # 3 is not handed out while 2 may still come

    now[0] += SEQ_ABANDONED_AFTER_SECONDS  # the feed's next read fills 2 and moves on
    with anyio.fail_after(5):
        assert _IDS.findall(await next_chunk) == [b"3"]
    # A stream resuming before the tombstone skips it too, and is not cut as a gap.
    joiner = hub.stream(hub.admit("holes"), cursor=1)
    await anext(joiner)  # the preamble
    await publish(log, "holes", 1)
    assert await seqs_until(joiner, 4) == [3, 4]
    assert await seqs_until(watcher, 4) == [4]
    assert hub.stats["closed_gap"] == 0
    for stream in (watcher, joiner):
        await stream.aclose()
    await hub.aclose()
