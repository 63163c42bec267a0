"""Exactly once and in order: the one place where deliveries become the application's events.

Every transport delivers at least once, and not always in order:

- duplicates: a reconnect resumes from the cursor while the old connection's last
  events are still in flight; a WebSocket subscribe sends a backlog that overlaps
  the live fan-out (``websocket_api.routes``); a polling reply can repeat a page.
- gaps: WebSocket fan-out posts to connections from concurrent invocations, so
  event N+1 can arrive before N, and a post can be lost outright (a throttled or
  failed ``post_to_connection``).
- resets: the cursor is older than the retained history, and the server says so.

All three transports feed the same ``Sequencer``. It keeps the position (the last
seq it let through) and, for each event:

- ``seq <= position``: a duplicate, dropped and counted;
- ``seq == position + 1``: the next one, delivered;
- ``seq > position + 1``: a gap. Before delivering the later event it reads the
  log after the position (``Backfill``, the polling API's ``GET .../events?after=``)
  until the gap is filled. The log never hands out N+1 before N is settled, so
  one read normally fills it; a page's ``next`` may pass seqs without an event (no
  publisher wrote them: the log's tombstones), and the position moves past them.
  ``BACKFILL_ATTEMPTS`` empty reads, outlasting the log's bound for an abandoned seq,
  are an error.

A ``reset`` (with the oldest retained seq) is accepted: history before ``oldest``
is gone, so the position moves to ``oldest - 1`` and the reset is recorded
(``resets``, the stats and the ``on_reset`` callback) instead of being treated as
a gap that can never fill. It can also move the position back: the log answers
a cursor from beyond its head (a wiped table, another environment) with a reset
to what it has now.

A subscription without a cursor ("live only") has no position until the server
says where the live stream starts (``start(head)``: the polling reply's ``next``,
the SSE preamble's ``id``, the WebSocket ``subscribed`` frame's ``head``). Events
that come before that are held and sorted, then treated as above.

The sequencer does no I/O of its own apart from the ``Backfill`` it is given, so
it is tested without a network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from client.config import BACKFILL_ATTEMPTS, BACKFILL_MAX_PAUSE_SECONDS, BACKFILL_PAUSE_SECONDS
from client.errors import ClientError
from client.stats import TransportStats
from eventlog.events import Event


@dataclass(frozen=True, slots=True)
class Page:
    """One read of the log after a cursor: what ``GET /channels/{c}/events`` returns."""

    events: Sequence[Event]
    next: int
    reset: bool = False
    oldest: int | None = None


class Backfill(Protocol):
    """Read the log of ``channel`` after ``after`` (no waiting)."""

    def __call__(self, channel: str, after: int) -> Awaitable[Page]: ...


@dataclass(frozen=True, slots=True)
class Reset:
    """History the subscription will never see: the position moved from ``after`` to
    ``oldest - 1``. ``after`` is None when it happened before the subscription had one."""

    channel: str
    after: int | None
    oldest: int

    @property
    def lost(self) -> range:
        """The seqs skipped (empty when the position moved back)."""
        start = 1 if self.after is None else self.after + 1
        return range(start, max(start, self.oldest))


def sequence_gap(channel: str, missing: int, detail: str) -> ClientError:
    return ClientError(
        status=None,
        code="sequence_gap",
        detail=f"event {channel}/{missing} is missing and {detail}",
    )


class Sequencer:
    """Turn a transport's deliveries into each event exactly once, in seq order."""

    def __init__(
        self,
        *,
        channel: str,
        after: int | None,
        backfill: Backfill | None,
        stats: TransportStats | None = None,
        on_reset: Callable[[Reset], None] | None = None,
        backfill_attempts: int = BACKFILL_ATTEMPTS,
        backfill_pause_seconds: float = BACKFILL_PAUSE_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.channel = channel
        self.position = after
        """The last seq let through (None: live only, not started yet)."""
        self.resets: list[Reset] = []
        self.stats = stats if stats is not None else TransportStats()
        self._backfill = backfill
        self._on_reset = on_reset
        self._backfill_attempts = backfill_attempts
        self._backfill_pause = backfill_pause_seconds
        self._sleep = sleep
        self._held: list[Event] = []
        self._start_at_first = False

    @property
    def started(self) -> bool:
        return self.position is not None or self._start_at_first

    async def start(self, head: int | None) -> list[Event]:
        """The server confirmed the subscription; a live-only one starts after ``head``.

        Without a head (a server that did not say) a live-only subscription starts at
        the first event it receives. A subscription with a position ignores both.
        """
        if self.position is not None:
            return []
        if head is None:
            self._start_at_first = True
        else:
            self.position = head
        return await self._release_held()

    async def push(self, event: Event) -> list[Event]:
        """The events to deliver now, in order, because ``event`` arrived."""
        if event.channel != self.channel:
            raise ValueError(f"event of channel {event.channel!r} pushed to {self.channel!r}")
        if self.position is None:
            if not self._start_at_first:
                self._held.append(event)
                return []
            self.position = event.seq - 1
        if event.seq <= self.position:
            self.stats.duplicates += 1
            return []
        delivered: list[Event] = []
        if event.seq > self.position + 1:
            delivered += await self._fill(until=event.seq - 1)
            if event.seq <= self.position:  # the backfill brought it too
                self.stats.duplicates += 1
                return delivered
        self.position = event.seq
        delivered.append(event)
        return delivered

    async def push_all(self, events: Sequence[Event]) -> list[Event]:
        """Push events that arrived together, sorted first: a reordering inside one batch
        (frames already waiting in a socket buffer) costs no backfill."""
        delivered: list[Event] = []
        for event in sorted(events, key=lambda e: e.seq):
            delivered += await self.push(event)
        return delivered

    async def reset(self, oldest: int) -> list[Event]:
        """The server says history before ``oldest`` is gone: continue from there."""
        target = oldest - 1
        if self.position == target:
            return []  # nothing skipped, nothing repeated: not news
        record = Reset(channel=self.channel, after=self.position, oldest=oldest)
        self.position = target
        self._start_at_first = False
        self.resets.append(record)
        self.stats.resets += 1
        if self._on_reset is not None:
            self._on_reset(record)
        return await self._release_held()

    async def _release_held(self) -> list[Event]:
        held, self._held = self._held, []
        return await self.push_all(held) if held else []

    async def _fill(self, *, until: int) -> list[Event]:
        """Read the log after the position until it reaches ``until``."""
        assert self.position is not None
        if self._backfill is None:
            raise sequence_gap(self.channel, self.position + 1, "this transport cannot backfill")
        delivered: list[Event] = []
        empty_reads = 0
        while self.position < until:
            before = self.position
            page = await self._backfill(self.channel, before)
            self.stats.backfills += 1
            if page.reset and page.oldest is not None:
                delivered += await self.reset(page.oldest)
            # A page accounts for every seq up to its ``next``: a seq in that range without
            # an event is one no publisher wrote (the log's tombstone), never a lost event.
            for event in page.events:
                if event.seq <= self.position:
                    continue
                self.position = event.seq
                delivered.append(event)
            self.position = max(self.position, page.next)
            if self.position == before and not page.reset:
                empty_reads += 1
                if empty_reads >= self._backfill_attempts:
                    raise sequence_gap(
                        self.channel,
                        before + 1,
                        f"{empty_reads} reads of the log did not return it",
                    )
                pause = self._backfill_pause * 2 ** (empty_reads - 1)
                await self._sleep(min(pause, BACKFILL_MAX_PAUSE_SECONDS))
        return delivered
