"""One reader of the event log per channel, shared by every stream of that channel.

Why a stateful tier does it this way
------------------------------------
A stateless design would give each open stream its own loop over the log: N
clients of one channel, N queries every reader interval. A long-lived process
can do better because it *holds* its clients: all streams of a channel in this
process share one ``ChannelFeed``, a background task that polls the log for that
channel (one ``Query`` per interval, and only while the channel has subscribers)
and hands each new event to every subscriber. N client connections become one
upstream reader per channel per process, so the cost of the log scales with
channels x tasks, not with clients. Each event is encoded into its SSE frame once
and the same bytes object is queued for every subscriber, so a subscriber's queue
costs a reference per event, not a copy.

Most of the time a stream is caught up: its queue is empty and its task waits
(``parked``). Then the feed does not queue the batch and wake the task, one task
switch per stream per event; it hands the batch, joined once into one body for all,
to the stream's ``write_now`` (``sse_service.stream``), which runs the server's
``send`` in the feed's own task. uvicorn's ``send`` only waits when the socket is
backed up; a write that waits is finished by the stream's own task, and the
subscriber counts as not parked until it has been. A batch larger than a write slice
goes through the queues, to be written in slices. The heartbeat is the timeout of
the stream's wait: a timer, not a task; since direct writes do not end the wait, a
stream that gets its events that way still gets a heartbeat every interval.

The price of sharing is that one slow client must not hold the others back or
grow the process without bound. Every subscriber is bounded in bytes
(``queue_bytes``): the frames queued for it plus the ones being written to it.
Writes go out in slices of at most ``write_slice_bytes``, and the next slice is
taken only once the server accepted the last one (uvicorn waits for the socket
to drain first), so a stalled client's own memory is about two slices; what it
queues are references to frames every subscriber shares. When the feed would
take a subscriber past its bound, the subscriber is disconnected (its stream is
cut, even in the middle of a blocked write) and the client reconnects with
``Last-Event-ID``. Nothing is lost, because the log, not this process, is the
record: the reconnect reads the backlog from the log. A backlog page (up to
``MAX_READ_LIMIT`` events read for this one stream) counts as being written
until its last slice has gone, so it is bounded the same way.

The join race
-------------
A client that arrives with a cursor needs the backlog (from the log) followed by
live events (from the shared feed), with nothing missed between the two. Reading
the backlog first and subscribing afterwards loses whatever the feed hands out in
between::

    client (cursor 10)              feed (position 12)              log
    read backlog after 10 --------------------------------------->  11, 12
                                    read after 12 -------------->   13
                                    hand 13 to current subscribers  (client not yet one)
    subscribe to the feed
    next live event: 14             -> 13 is lost

So the order here is the other way round, and duplicates are dropped by seq:

1. Put the subscriber's queue on the feed. From this moment every event the feed
   hands out lands in the queue: all events after the feed's position P at that
   moment, gapless, because the feed hands out contiguous runs in seq order.
2. Wait until the feed knows its position (a new feed first reads the head).
3. Read the backlog from the log, after the cursor, page by page, until a read
   reaches the head H. The read starts after step 1, and event P was already in
   the log when the feed handed it out, so H >= P: the backlog covers everything
   up to P, the queue everything after it.
4. Drain the queue, skipping every seq already sent.

::

    cursor ........ P ................ H
    |-- backlog from the log ---------|
                    |-- queue (from step 1) ----------------> live
                    |-- overlap ------| dropped by seq

A client without a cursor needs no backlog: it starts at the feed's position (at
most one reader interval behind the head) and is told so with an ``id:`` line, so
that a reconnect resumes from there instead of from a later head.

All of this runs on the event loop thread, so "put the queue on the feed" and "the
feed hands out a batch" never interleave. The log's boto3 calls block, so they run
in worker threads (``anyio.to_thread``, whose limiter also caps how many DynamoDB
calls this process makes at once).

Ending streams
--------------
A subscriber's stream ends for one of these reasons: the client left; it was too
slow (``overflow``); the process is draining (``drain``: each stream ends at a random
moment within the first half of the drain window, so clients spread their
reconnects over the other tasks); the feed found the channel's history moved
under it, e.g. a wiped table (``reset``: the reconnect gets the protocol's
``reset``); or the stream's deadline passed (``expired``, the seam for tokens that
expire).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import partial
from typing import Any, Literal

import anyio.to_thread

from eventlog.config import MAX_READ_LIMIT
from eventlog.events import Event, encode_json
from eventlog.log import EventLog, ReadResult
from sse_service.broker import BrokerLink

logger = logging.getLogger(__name__)

CloseReason = Literal["client_left", "overflow", "drain", "reset", "expired", "gap"]

Frame = tuple[int, bytes]
"""An event's seq and its SSE message, encoded once and shared by every subscriber."""

MAX_READER_BACKOFF_SECONDS = 5.0
"""Longest wait between reads of a feed whose reads fail (throttling, network)."""

DRAIN_SPREAD = 0.5
"""Fraction of the drain window over which open streams are ended on shutdown."""


def event_frame(event: Event) -> bytes:
    """``id: <seq>`` and ``data: <Event JSON>``; the default event type, so ``onmessage`` fires.

    The JSON is compact and escapes every newline, so it is always one ``data:`` line.
    """
    return b"id: %d\ndata: %s\n\n" % (event.seq, event.encode().encode())


def reset_frame(oldest: int) -> bytes:
    """The ``reset`` event. Its ``id`` is the cursor the stream continues from, so a client
    that reconnects right after it continues from there instead of hearing it again."""
    data = encode_json({"oldest": oldest}).encode()
    return b"id: %d\nevent: reset\ndata: %s\n\n" % (oldest - 1, data)


def preamble(*, retry_milliseconds: int, cursor: int | None) -> bytes:
    """The first message: the ``retry:`` hint, and for a live-only stream its start ``id:``.

    A message without ``data`` fires no event in the browser, but its ``id`` still
    becomes the EventSource's ``lastEventId``.
    """
    start = b"" if cursor is None else b"id: %d\n" % cursor
    return b"retry: %d\n%s\n" % (retry_milliseconds, start)


EXPIRED_FRAME = b"event: expired\ndata: {}\n\n"

HEARTBEAT_FRAME = b": heartbeat\n\n"
"""A comment: no event in the browser, but bytes on an idle connection."""


class Subscriber:
    """One open stream's place in a feed: frames bounded in bytes, and why it must end.

    ``held`` is what the bound counts: the bytes queued plus the bytes being written
    (taken from the queue, or a backlog page, and not yet accepted by the server).

    Ten thousand of these live in one process, so each is small: slots, and a bare
    future to wait on instead of an ``asyncio.Event`` (whose waiter deque alone is
    larger than the rest of the subscriber).
    """

    __slots__ = (
        "_capacity",
        "_frames",
        "_queued",
        "_waiter",
        "_woken",
        "channel",
        "in_flight",
        "last",
        "on_cut",
        "parked",
        "peak",
        "reason",
        "timers",
        "write_now",
        "write_pending",
    )

    def __init__(self, *, channel: str, capacity: int) -> None:
        self.channel = channel
        self._capacity = capacity
        self._frames: deque[Frame] = deque()
        self._queued = 0
        self.in_flight = 0
        self.peak = 0  # the most bytes this subscriber ever held
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self.reason: CloseReason | None = None
        self.on_cut: Callable[[], None] | None = None
        """Set by the response: end a write the client is not taking (see ``cut``)."""
        self.write_now: Callable[[bytes], bool] | None = None
        """Set by the response: write now, True if done; False: the write waits for the
        socket, and the stream's task finishes it (``write_pending``)."""
        self.write_pending = False
        self.parked = False  # the stream waits for live frames, its queue empty
        self.last = 0  # while parked: the last seq the stream has written
        self.timers: list[asyncio.TimerHandle] = []  # cancelled when the stream ends

    @property
    def held(self) -> int:
        return self._queued + self.in_flight

    def offer(self, frames: list[Frame], body: bytes | None = None) -> None:
        """Queue frames; a subscriber that would hold more than its bound is closed instead.

        ``body``, the frames joined (the feed joins them once for every subscriber), is
        written at once, without waking the stream's task, when the stream is waiting
        for exactly these frames: ``write_now``, set by the response, hands it to the
        server. A write the socket cannot take yet is left to the stream's task.
        """
        if self.reason is not None:
            return
        if (
            body is not None
            and self.parked
            and not self.write_pending
            and self.write_now is not None
            and frames[0][0] == self.last + 1
        ):
            self.last = frames[-1][0]
            if body and not self.write_now(body):
                self.write_pending = True
                self.wake()
            return
        size = sum(len(frame) for _, frame in frames)
        if self.held + size > self._capacity:
            self.close("overflow")
            return
        self._frames.extend(frames)
        self._queued += size
        self.peak = max(self.peak, self.held)
        self.wake()

    def writing(self, size: int) -> bool:
        """Count ``size`` bytes as being written; False (and closed) past the bound."""
        self.in_flight = size
        if self.held > self._capacity:
            self.close("overflow")
            return False
        self.peak = max(self.peak, self.held)
        return True

    def close(self, reason: CloseReason) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self._frames.clear()  # a closed subscriber holds no memory
        self._queued = 0
        self.wake()
        if reason == "overflow":
            self.cut()

    def cut(self) -> None:
        """End the stream even in the middle of a write (a client that stopped reading)."""
        if self.on_cut is not None:
            self.on_cut()

    def wake(self) -> None:
        self._woken = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, at_most: float | None = None) -> bool:
        """Wait until something changed (frames queued, the feed ready, the stream closed):
        True; or until ``at_most`` seconds passed without a change: False.

        The timeout is how a stream sends its heartbeat: a timer on this one wait, not
        a task of its own."""
        if not self._woken:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if at_most is None else loop.call_later(at_most, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        woken, self._woken = self._woken, False
        return woken

    def take(self, max_bytes: int) -> list[Frame]:
        """The next write's frames (``next_slice``); they count as being written until the
        next ``take``."""
        frames, size = next_slice(self._frames, max_bytes)
        self._queued -= size
        self.in_flight = size
        return frames


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def next_slice(frames: deque[Frame], max_bytes: int) -> tuple[list[Frame], int]:
    """Take the oldest frames off ``frames``: at least one, at most ``max_bytes`` beyond the
    first. Returns them and their size."""
    taken: list[Frame] = []
    size = 0
    while frames and (not taken or size + len(frames[0][1]) <= max_bytes):
        frame = frames.popleft()
        taken.append(frame)
        size += len(frame[1])
    return taken, size


class ChannelFeed:
    """The one reader of a channel in this process, alive while the channel has subscribers.

    Without a broker (or while it is unreachable) the feed polls the log every reader
    interval. With one (``sse_service.broker``) the broker pushes the channel's events
    and the log is read only to catch up: when the subscription is confirmed, when a
    pushed event is not the next seq (the stream does not promise seq order, and a
    tombstone is never pushed), and again while such a read stops at a seq still
    being written. Either source hands out contiguous runs in seq order, and a seq
    handed out is never handed out again, so the join argument above holds for both.
    """

    def __init__(self, *, hub: Hub, channel: str) -> None:
        self.hub = hub
        self.channel = channel
        self.subscribers: set[Subscriber] = set()
        self.position: int | None = None  # last seq handed out; None until the head is read
        self.task: asyncio.Task[None] | None = None
        self.push = False  # the broker confirmed this channel's subscription
        self.catch_up = False  # a read of the log is due before pushed events can follow
        self._ahead: dict[int, Frame] = {}  # pushed events after a gap, until a read fills it
        self._wake = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"sse-feed:{self.channel}"
        )
        if self.hub.broker is not None:
            self.hub.broker.watch(self.channel, self)

    # --- what the broker says (sse_service.broker.Watcher) --------------------------------------

    def subscribed(self) -> None:
        self.push = True
        self.catch_up = True  # what was published before this moment is in the log
        self._wake.set()

    def unsubscribed(self) -> None:
        self.push = False
        self._ahead.clear()
        self._wake.set()

    def pushed(self, payload: bytes) -> None:
        if not self.push:
            return
        try:
            event = Event.decode(payload)
        except Exception:
            logger.warning(
                "channel %r: an unreadable broker message; reading the log", self.channel
            )
            self._read_soon()
            return
        if self.position is None or event.seq <= self.position:
            return  # the first read of the head, or a read since, covers it
        self._ahead[event.seq] = (event.seq, event_frame(event))
        if len(self._ahead) > MAX_READ_LIMIT:
            self._ahead.clear()  # a long gap: the log has them all anyway
        self._hand_out_ahead()
        if self._ahead:
            self._read_soon()  # a gap before them

    def _read_soon(self) -> None:
        self.catch_up = True
        self._wake.set()

    def _hand_out_ahead(self) -> None:
        assert self.position is not None
        for seq in [seq for seq in self._ahead if seq <= self.position]:
            del self._ahead[seq]
        frames: list[Frame] = []
        while self.position + 1 + len(frames) in self._ahead:
            frames.append(self._ahead.pop(self.position + 1 + len(frames)))
        if frames:
            self._offer(frames)

    async def _wait(self, seconds: float | None) -> None:
        """Until woken (a push, a gap, the broker's news), or ``seconds`` have passed."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the wait in a task of
        # its own, one more task per wait.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    # --- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.hub.reader_interval_seconds
        backoff = interval
        try:
            while self.subscribers:
                try:
                    if self.position is None:
                        await self._start_at_head()
                        continue
                    if self.push and not self.catch_up:
                        await self._wait(None)  # until a push, a gap, or a lost broker
                        continue
                    self.catch_up = False
                    result = await self.hub.read(self.channel, self.position)
                except Exception:
                    # The log is unavailable or throttling: the streams stay open (their
                    # heartbeats continue) and the feed retries, backing off.
                    logger.exception("reading %r failed; retrying in %.1f s", self.channel, backoff)
                    self.catch_up = self.push
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_READER_BACKOFF_SECONDS)
                    continue
                backoff = interval
                if result.reset:
                    self._history_moved(result)
                else:
                    self._hand_out(result)
                    if result.events and result.head is None:
                        self.catch_up = True
                        continue  # more are waiting: read again at once
                if self.push:
                    if result.head is None or self._ahead:
                        # Stopped at a seq still being written: read again after the interval.
                        self.catch_up = True
                        await self._wait(interval)
                    continue
                await self._wait(interval)
        finally:
            # No await between the loop's last check and this: a subscriber that joins
            # now finds no feed and starts a new one.
            self.hub.feed_ended(self)
            if self.hub.broker is not None:
                self.hub.broker.unwatch(self.channel, self)

    async def _start_at_head(self) -> None:
        self.position = await self.hub.head(self.channel)
        for subscriber in self.subscribers:
            subscriber.wake()

    def _hand_out(self, result: ReadResult) -> None:
        """Hand out every seq after the position that ``result`` accounts for, in order.

        A seq without an event (a tombstone: its publisher never wrote it) is an empty
        frame, never sent: a stream still sees every seq, however its queue is sliced
        into writes, so it tells "nothing to send there" from a gap. Tombstones are
        rare, so these cost next to nothing. Pushed events may have moved the position
        while the read was on its way: only what is still after it is handed out.
        """
        assert self.position is not None
        self.hub.stats["events_read"] += len(result.events)
        if result.next > self.position:
            events = {event.seq: event for event in result.events}
            self._offer(
                [
                    (seq, event_frame(events[seq]) if seq in events else b"")
                    for seq in range(self.position + 1, result.next + 1)
                ]
            )
        if self._ahead:
            self._hand_out_ahead()

    def _offer(self, frames: list[Frame]) -> None:
        # One body for every subscriber that takes it directly; a larger batch goes through
        # the queues, to be written in slices.
        size = sum(len(frame) for _, frame in frames)
        body = (
            b"".join(frame for _, frame in frames) if size <= self.hub.write_slice_bytes else None
        )
        for subscriber in list(self.subscribers):
            subscriber.offer(frames, body)
        self.position = frames[-1][0]

    def _history_moved(self, result: ReadResult) -> None:
        logger.warning(
            "channel %r: history moved under the reader (oldest %s); ending its streams",
            self.channel,
            result.oldest,
        )
        for subscriber in list(self.subscribers):
            subscriber.close("reset")
        self.position = result.next
        self._ahead.clear()


class Hub:
    """The feeds and subscribers of one process, and its drain."""

    def __init__(
        self,
        *,
        log: EventLog,
        queue_bytes: int,
        write_slice_bytes: int,
        reader_interval_seconds: float,
        drain_seconds: float,
        retry_milliseconds: int,
        heartbeat_seconds: float,
        broker: BrokerLink | None = None,
    ) -> None:
        self.log = log
        self.broker = broker
        """The push backplane (``sse_service.broker``); None: every feed polls the log."""
        self.queue_bytes = queue_bytes
        self.write_slice_bytes = write_slice_bytes
        self.reader_interval_seconds = reader_interval_seconds
        self.drain_seconds = drain_seconds
        self.retry_milliseconds = retry_milliseconds
        self.heartbeat_seconds = heartbeat_seconds
        self.feeds: dict[str, ChannelFeed] = {}
        self.subscribers: set[Subscriber] = set()
        self.draining = False
        self.stats: Counter[str] = Counter()

    @property
    def open_streams(self) -> int:
        return len(self.subscribers)

    # --- the log, off the event loop ------------------------------------------------------------

    async def read(self, channel: str, after: int) -> ReadResult:
        self.stats["log_reads"] += 1
        return await anyio.to_thread.run_sync(
            partial(self.log.read, channel, after, MAX_READ_LIMIT)
        )

    async def head(self, channel: str) -> int:
        self.stats["log_reads"] += 1
        return await anyio.to_thread.run_sync(self.log.head, channel)

    # --- subscribers ----------------------------------------------------------------------------

    def admit(self, channel: str) -> Subscriber:
        """Count a new stream before its response starts, so the cap cannot be overshot."""
        subscriber = Subscriber(channel=channel, capacity=self.queue_bytes)
        self.subscribers.add(subscriber)
        if self.draining:
            self._schedule_drain(subscriber)
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            if subscriber.reason is not None:
                self.stats[f"closed_{subscriber.reason}"] += 1
            peak = self.stats["peak_held_bytes"]
            self.stats["peak_held_bytes"] = max(peak, subscriber.peak)
        self.subscribers.discard(subscriber)
        for timer in subscriber.timers:
            timer.cancel()
        subscriber.timers.clear()
        feed = self.feeds.get(subscriber.channel)
        if feed is not None:
            feed.subscribers.discard(subscriber)

    def _join(self, subscriber: Subscriber) -> ChannelFeed:
        feed = self.feeds.get(subscriber.channel)
        if feed is None:
            feed = self.feeds[subscriber.channel] = ChannelFeed(
                hub=self, channel=subscriber.channel
            )
            feed.subscribers.add(subscriber)
            feed.start()
        else:
            feed.subscribers.add(subscriber)
        return feed

    def feed_ended(self, feed: ChannelFeed) -> None:
        if self.feeds.get(feed.channel) is feed:
            del self.feeds[feed.channel]

    async def stream(
        self, subscriber: Subscriber, *, cursor: int | None
    ) -> AsyncGenerator[bytes, None]:
        """The bytes of one stream: preamble, backlog after ``cursor``, then live events,
        and a heartbeat whenever the stream has waited ``heartbeat_seconds`` for them."""
        heartbeat = self.heartbeat_seconds
        try:
            feed = self._join(subscriber)  # step 1: queue first (see the module docstring)
            while feed.position is None and subscriber.reason is None:
                # Step 2; while the log cannot be read, the heartbeats keep the stream open.
                if not await subscriber.wait(heartbeat):
                    yield HEARTBEAT_FRAME
            if subscriber.reason is not None or feed.position is None:
                return
            last = feed.position
            if cursor is None:
                yield preamble(retry_milliseconds=self.retry_milliseconds, cursor=last)
            else:
                yield preamble(retry_milliseconds=self.retry_milliseconds, cursor=None)
                last = cursor
                backlog = self._backlog(subscriber, after=cursor, until=feed.position)
                async for chunk, position in backlog:  # step 3
                    last = position
                    if chunk:
                        yield chunk
            while subscriber.reason is None:  # step 4, then live
                frames = subscriber.take(self.write_slice_bytes)
                if not frames:
                    if subscriber.write_pending:
                        yield b""  # a direct write is waiting for the socket: finish it
                        continue
                    # Parked: the feed may write the next frames itself (Subscriber.offer).
                    subscriber.last, subscriber.parked = last, True
                    try:
                        woken = await subscriber.wait(heartbeat)
                    finally:
                        subscriber.parked = False
                    last = subscriber.last
                    if not woken:
                        yield HEARTBEAT_FRAME
                    continue
                fresh = [frame for seq, frame in frames if seq > last and frame]
                if frames[0][0] > last + 1:
                    # Cannot happen by the argument above; if it ever did, the client's
                    # reconnect would fill the gap from the log, so end the stream.
                    logger.error("gap before %d on %r after %d", frames[0][0], feed.channel, last)
                    subscriber.close("gap")
                    break
                last = max(last, frames[-1][0])
                if fresh:
                    yield b"".join(fresh)
            if subscriber.reason == "expired":
                yield EXPIRED_FRAME
        finally:
            self.leave(subscriber)

    async def _backlog(
        self, subscriber: Subscriber, *, after: int, until: int
    ) -> AsyncIterator[tuple[bytes, int]]:
        """Pages of the log after the cursor, in write slices, each with the cursor the client
        has once it has that slice, until a read reaches the head or ``until``.

        ``until`` is the feed's position when the stream joined: everything after it
        reaches the stream through its queue. A read stops before a seq that is still
        being written; then the backlog waits a reader interval and reads again.
        """
        while subscriber.reason is None:
            result = await self.read(subscriber.channel, after)
            frames: deque[Frame] = deque()
            if result.reset and result.oldest is not None:
                frames.append((result.oldest - 1, reset_frame(result.oldest)))
            frames += ((event.seq, event_frame(event)) for event in result.events)
            reached_head = result.head is not None
            moved = result.next != after
            after = result.next
            del result  # of the read, this stream keeps only the frames still to write
            unsent = sum(len(frame) for _, frame in frames)
            while frames:
                # The page's unsent frames are this stream's own: they count as being written.
                if not subscriber.writing(unsent):
                    return
                batch, size = next_slice(frames, self.write_slice_bytes)
                unsent -= size
                yield b"".join(frame for _, frame in batch), batch[-1][0]
            subscriber.in_flight = 0
            if moved:
                yield b"", after  # also past seqs without an event (tombstones) after the last
            if reached_head or after >= until:
                return
            if not moved:
                await asyncio.sleep(self.reader_interval_seconds)

    # --- shutdown -------------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Refuse new streams and end the open ones, spread over the first part of the window;
        at the end of the window, cut whatever is still open (a write the client never took)."""
        if self.draining:
            return
        self.draining = True
        logger.info("draining %d streams over %.1f s", self.open_streams, self._spread())
        for subscriber in list(self.subscribers):
            self._schedule_drain(subscriber)
        asyncio.get_running_loop().call_later(self.drain_seconds, self._cut_the_rest)

    def _cut_the_rest(self) -> None:
        for subscriber in list(self.subscribers):
            subscriber.close("drain")
            subscriber.cut()

    def end_all(self) -> None:
        """End every open stream now, cleanly (a local stop: nobody is waiting to take them)."""
        self.draining = True
        for subscriber in list(self.subscribers):
            subscriber.close("drain")

    def _spread(self) -> float:
        return self.drain_seconds * DRAIN_SPREAD

    def _schedule_drain(self, subscriber: Subscriber) -> None:
        delay = random.uniform(0, self._spread())  # noqa: S311 (spreading load, not security)
        loop = asyncio.get_running_loop()
        subscriber.timers.append(loop.call_later(delay, subscriber.close, "drain"))

    def end_after(self, subscriber: Subscriber, *, max_seconds: float) -> None:
        """End ``subscriber``'s stream cleanly, as a drain does, at a random moment between
        half of ``max_seconds`` and all of it (see ``eventlog.config.SSE_MAX_STREAM_SECONDS``)."""
        delay = random.uniform(max_seconds / 2, max_seconds)  # noqa: S311 (spreading load)
        loop = asyncio.get_running_loop()
        subscriber.timers.append(loop.call_later(delay, subscriber.close, "drain"))

    def expire_at(
        self,
        subscriber: Subscriber,
        *,
        expires_at: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """End ``subscriber``'s stream with ``event: expired`` at ``expires_at`` (epoch seconds),
        never before: event loop timers may fire a little early (libuv rounds to the
        millisecond), and the token is still valid until then, so a timer that fires early
        waits out the rest."""
        loop = asyncio.get_running_loop()

        def due() -> None:
            remaining = expires_at - clock()
            if remaining > 0:
                subscriber.timers.append(loop.call_later(remaining, due))
            else:
                subscriber.close("expired")

        subscriber.timers.append(loop.call_later(max(0.0, expires_at - clock()), due))

    async def aclose(self) -> None:
        """Stop every feed (at application shutdown, after the streams have ended)."""
        tasks = [feed.task for feed in self.feeds.values() if feed.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def snapshot(self) -> dict[str, Any]:
        broker: dict[str, Any] = {"broker": "off"}
        if self.broker is not None:
            state = "connected" if self.broker.connected else "disconnected"
            broker = {"broker": state, **{f"broker_{k}": v for k, v in self.broker.stats.items()}}
        return {
            "open_streams": self.open_streams,
            "channels": len(self.feeds),
            "draining": self.draining,
            **broker,
            **self.stats,
        }
