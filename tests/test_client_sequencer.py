"""The client's exactly-once logic, without a network: a fake log answers the backfill reads."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from client.config import BACKFILL_ATTEMPTS, BACKFILL_MAX_PAUSE_SECONDS
from client.errors import ClientError
from client.sequencer import Page, Reset, Sequencer
from client.stats import TransportStats
from eventlog.config import SEQ_ABANDONED_AFTER_SECONDS
from eventlog.events import Event

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def ev(seq: int, channel: str = "news") -> Event:
    return Event(channel=channel, seq=seq, data={"n": seq}, time="2026-11-28T08:47:00.123Z")


def seqs(events: list[Event]) -> list[int]:
    return [event.seq for event in events]


@dataclass
class FakeLog:
    """What the polling API's read would answer: events after a cursor, and resets."""

    head: int
    oldest: int = 1
    limit: int = 100
    reads: list[int] = field(default_factory=list)
    missing: set[int] = field(default_factory=set)
    """Seqs a read does not return yet (a log that is behind)."""

    async def read(self, channel: str, after: int) -> Page:
        assert channel == "news"
        self.reads.append(after)
        reset = after + 1 < self.oldest or after > self.head
        start = self.oldest - 1 if reset else after
        events: list[Event] = []
        for seq in range(start + 1, self.head + 1):
            if seq in self.missing or len(events) == self.limit:
                break
            events.append(ev(seq))
        cursor = events[-1].seq if events else start
        return Page(events=events, next=cursor, reset=reset, oldest=self.oldest if reset else None)


def sequencer(
    *,
    after: int | None,
    log: FakeLog | None = None,
    on_reset: Callable[[Reset], None] | None = None,
    sleeps: list[float] | None = None,
) -> Sequencer:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return Sequencer(
        channel="news",
        after=after,
        backfill=None if log is None else log.read,
        stats=TransportStats(),
        on_reset=on_reset,
        sleep=sleep,
    )


async def push_each(seq: Sequencer, numbers: list[int]) -> list[Event]:
    delivered: list[Event] = []
    for number in numbers:
        delivered += await seq.push(ev(number))
    return delivered


# --- order and duplicates -------------------------------------------------------------------


def test_events_in_order_pass_through_and_move_the_position() -> None:
    seq = sequencer(after=0)
    assert seqs(run(push_each(seq, [1, 2, 3]))) == [1, 2, 3]
    assert seq.position == 3
    assert seq.stats.duplicates == 0


def test_a_cursor_in_the_middle_continues_after_it() -> None:
    seq = sequencer(after=41)
    assert seqs(run(push_each(seq, [40, 41, 42]))) == [42]
    assert seq.stats.duplicates == 2


def test_duplicates_are_dropped_and_counted() -> None:
    seq = sequencer(after=0)
    assert seqs(run(push_each(seq, [1, 1, 2, 1, 2, 3, 3]))) == [1, 2, 3]
    assert seq.stats.duplicates == 4


def test_a_batch_out_of_order_is_sorted_without_a_backfill() -> None:
    log = FakeLog(head=5)
    seq = sequencer(after=0, log=log)
    delivered = run(seq.push_all([ev(3), ev(1), ev(2), ev(2), ev(5), ev(4)]))
    assert seqs(delivered) == [1, 2, 3, 4, 5]
    assert log.reads == []
    assert seq.stats.duplicates == 1


def test_an_event_of_another_channel_is_a_bug_not_a_delivery() -> None:
    seq = sequencer(after=0)
    with pytest.raises(ValueError, match="other"):
        run(seq.push(ev(1, channel="other")))


# --- gaps -----------------------------------------------------------------------------------


def test_a_gap_is_backfilled_from_the_log_before_the_later_event() -> None:
    log = FakeLog(head=5)
    seq = sequencer(after=2, log=log)
    assert seqs(run(seq.push(ev(5)))) == [3, 4, 5]
    assert log.reads == [2]
    assert seq.stats.backfills == 1
    # The original deliveries of 3 and 4, late: already delivered, so dropped.
    assert run(push_each(seq, [3, 4])) == []
    assert seqs(run(seq.push(ev(6)))) == [6]


def test_a_backfill_may_bring_more_than_the_gap_and_nothing_repeats() -> None:
    log = FakeLog(head=9)
    seq = sequencer(after=0, log=log)
    assert seqs(run(seq.push(ev(3)))) == list(range(1, 10))
    assert run(push_each(seq, [4, 5, 9])) == []
    assert seqs(run(seq.push(ev(10)))) == [10]


def test_a_backfill_reads_page_by_page_until_the_gap_is_filled() -> None:
    log = FakeLog(head=250, limit=100)
    seq = sequencer(after=0, log=log)
    assert seqs(run(seq.push(ev(251)))) == list(range(1, 252))
    assert log.reads == [0, 100, 200]


def test_a_log_that_is_behind_is_read_again_with_a_pause() -> None:
    log = FakeLog(head=5, missing={3})
    sleeps: list[float] = []
    seq = sequencer(after=2, log=log, sleeps=sleeps)

    async def scenario() -> list[Event]:
        original = log.read

        async def catching_up(channel: str, after: int) -> Page:
            if len(log.reads) == 2:
                log.missing.clear()  # the third read finds it
            return await original(channel, after)

        seq._backfill = catching_up
        return await seq.push(ev(5))

    assert seqs(run(scenario())) == [3, 4, 5]
    assert log.reads == [2, 2, 2]
    assert sleeps == [0.05, 0.1]  # doubling from BACKFILL_PAUSE_SECONDS


def test_a_gap_that_never_fills_is_an_error_not_a_skip() -> None:
    log = FakeLog(head=5, missing={3})
    sleeps: list[float] = []
    seq = sequencer(after=2, log=log, sleeps=sleeps)
    with pytest.raises(ClientError) as caught:
        run(seq.push(ev(5)))
    assert caught.value.code == "sequence_gap"
    assert "news/3" in caught.value.detail
    assert len(log.reads) == BACKFILL_ATTEMPTS
    assert max(sleeps) == BACKFILL_MAX_PAUSE_SECONDS
    assert sum(sleeps) > SEQ_ABANDONED_AFTER_SECONDS  # outlasts the log's bound for a hole
    assert seq.position == 2


def test_without_a_backfill_a_gap_is_an_error() -> None:
    seq = sequencer(after=1)
    with pytest.raises(ClientError) as caught:
        run(seq.push(ev(3)))
    assert caught.value.code == "sequence_gap"


# --- resets ---------------------------------------------------------------------------------


def test_a_reset_moves_the_position_to_the_oldest_retained_and_is_recorded() -> None:
    seen: list[Reset] = []
    seq = sequencer(after=2, on_reset=seen.append)
    assert run(seq.reset(10)) == []
    assert seq.position == 9
    expected = Reset(channel="news", after=2, oldest=10)
    assert seq.resets == seen == [expected]
    assert expected.lost == range(3, 10)
    assert seq.stats.resets == 1
    assert seqs(run(push_each(seq, [9, 10, 11]))) == [10, 11]


def test_a_reset_that_skips_nothing_is_not_news() -> None:
    seq = sequencer(after=9)
    assert run(seq.reset(10)) == []
    assert seq.resets == []
    assert seq.stats.resets == 0


def test_a_reset_below_the_position_starts_the_new_history() -> None:
    """A cursor from beyond the log's head (a wiped table): the log's events are new."""
    seq = sequencer(after=50)
    run(seq.reset(1))
    assert seq.position == 0
    assert seq.resets[0].lost == range(51, 51)  # nothing skipped
    assert seqs(run(push_each(seq, [1, 2]))) == [1, 2]


def test_a_reset_during_a_backfill_is_accepted_and_the_rest_delivered() -> None:
    log = FakeLog(head=20, oldest=15)
    seen: list[Reset] = []
    seq = sequencer(after=2, log=log, on_reset=seen.append)
    assert seqs(run(seq.push(ev(20)))) == list(range(15, 21))
    assert seen == [Reset(channel="news", after=2, oldest=15)]


# --- live only ------------------------------------------------------------------------------


def test_live_only_holds_early_events_until_the_server_says_where_it_starts() -> None:
    seq = sequencer(after=None)
    assert not seq.started
    assert run(push_each(seq, [7, 5, 6])) == []
    assert seqs(run(seq.start(5))) == [6, 7]  # 5 was published before the subscription
    assert seq.position == 7
    assert seq.stats.duplicates == 1
    assert run(seq.start(99)) == []  # a second confirmation (a resubscribe) changes nothing


def test_live_only_without_a_head_starts_at_the_first_event() -> None:
    seq = sequencer(after=None)
    run(seq.start(None))
    assert seq.started
    assert seqs(run(push_each(seq, [12, 13]))) == [12, 13]


def test_a_cursor_ignores_the_head_of_the_confirmation() -> None:
    seq = sequencer(after=3)
    run(seq.start(10))
    assert seq.position == 3


# --- all of it at once ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_repeated_and_lost_deliveries_come_out_exactly_once_in_order(seed: int) -> None:
    """What a WebSocket fan-out can do at worst: every event delivered zero to three
    times, in bursts, each burst shuffled; the sequencer still yields 1..N once each."""
    rng = random.Random(seed)
    total = 300
    deliveries = [n for n in range(1, total + 1) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]
    deliveries.append(total)  # the last one arrives at least once, so the end is known
    # Mostly in order, locally shuffled: a window of a few positions.
    keyed = sorted(deliveries, key=lambda n: n + rng.uniform(-4, 4))
    log = FakeLog(head=total, limit=2)  # short pages: a backfill fills little more than its gap
    seq = sequencer(after=0, log=log)

    async def feed() -> list[Event]:
        delivered: list[Event] = []
        position = 0
        while position < len(keyed):
            size = rng.randint(1, 6)
            delivered += await seq.push_all([ev(n) for n in keyed[position : position + size]])
            position += size
        return delivered

    delivered = run(feed())
    assert seqs(delivered) == list(range(1, total + 1))
    # At most one delivery of each seq can be fresh; every other one was dropped.
    assert seq.stats.duplicates >= len(keyed) - total
    print(
        f"seed {seed}: {len(keyed)} deliveries, {seq.stats.duplicates} duplicates dropped, "
        f"{seq.stats.backfills} backfill reads"
    )


def test_seqs_a_page_passes_without_events_are_skipped_not_a_gap() -> None:
    # The log filled seq 3 with a tombstone: a read after 2 returns 4 with next 4.
    async def read(channel: str, after: int) -> Page:
        events = [ev(4)] if after < 4 else []
        return Page(events=events, next=4 if after < 4 else after)

    seq = sequencer(after=2)
    seq._backfill = read
    assert seqs(run(seq.push(ev(4)))) == [4]
    assert seqs(run(seq.push(ev(5)))) == [5]
    assert seq.position == 5


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("after", [0, None], ids=["cursor", "live-only"])
def test_stream_disorder_with_a_log_still_being_written_comes_out_exactly_once(
    seed: int, after: int | None
) -> None:
    """What ``local.stream_disorder`` does to a channel whose publishers race: seqs are
    written out of order (a backfill meets holes that fill while it pauses), each event
    is fanned out only once written, and a record may wait a few batches behind later
    ones; a live-only subscription hears of its start (``subscribed``) after some events."""
    rng = random.Random(seed)
    total = 200
    # The order the log's items are written: racing publishers swap neighbours.
    written_order = sorted(range(1, total + 1), key=lambda n: n + rng.uniform(-3, 3))
    log = FakeLog(head=0, limit=3)  # its head is the counter: seqs taken, maybe not written
    written: set[int] = set()
    pending: list[tuple[int, int]] = []  # (the batch it is due in, seq): the stream, held back
    batch = 0

    def write_next() -> None:
        n = written_order.pop(0)
        written.add(n)
        log.head = max(log.head, n)
        log.missing = set(range(1, log.head + 1)) - written  # holes a read stops at
        pending.append((batch + rng.choice([0, 0, 1, 2, 3]), n))

    async def pause(seconds: float) -> None:  # a backfill waits: publishers go on writing
        if written_order:
            write_next()

    seq = Sequencer(
        channel="news", after=after, backfill=log.read, stats=TransportStats(), sleep=pause
    )

    async def feed() -> list[Event]:
        nonlocal batch
        delivered: list[Event] = []
        started = after is not None
        while written_order or pending:
            for _ in range(rng.randint(1, 4)):
                if written_order:
                    write_next()
            due = sorted(s for when, s in pending if when <= batch)
            pending[:] = [(when, s) for when, s in pending if when > batch]
            batch += 1
            if not started and due:
                # The subscribe's reply comes after the first live events, at the head then.
                delivered += await seq.push_all([ev(n) for n in due])
                delivered += await seq.start(0)
                started = True
                continue
            delivered += await seq.push_all([ev(n) for n in due])
        return delivered

    delivered = run(feed())
    assert seqs(delivered) == list(range(1, total + 1))
