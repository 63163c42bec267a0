"""The one interface of the three transports: subscribe from a cursor, iterate, publish.

::

    async with open_transport("sse", endpoints, token=None) as transport:
        sub = await transport.subscribe("news", after=None)  # None: live only, from the head
        async for event in sub:                               # each event once, in seq order
            ...
        event = await transport.publish("news", {"any": "json"})

How a subscription works, whatever the transport: a background task (the *pump*)
runs the transport's connection, turns what arrives into signals (``Ready``: the
server confirmed the subscription; an ``Event``; ``ResetSignal``: history is
gone) and hands them to the subscription's ``Sequencer`` (``client.sequencer``),
the one place that drops duplicates, backfills gaps and accepts resets. What the
sequencer lets through goes into a bounded queue that ``__anext__`` reads, so:

- ``subscribe()`` returns once the server has confirmed the subscription: a live-only
  subscription knows where it starts, and an event published after ``subscribe()``
  returns is delivered. A refusal (400, 401, 403, an ``error`` frame) is raised here.
- a consumer that stops reading holds the transport back (the queue is bounded) rather
  than growing memory; cancelling ``__anext__`` (a timeout) loses nothing.
- ``cursor`` is the last seq the application received: persist it and resume with
  ``subscribe(channel, after=cursor)`` to continue without loss or repetition.
- resets are exposed as ``resets`` (a list of ``Reset``) and an optional ``on_reset``
  callback, and counted in ``stats``; the iteration itself just continues after them.
- connection loss is handled inside: reconnect with backoff from the sequencer's
  position. Only what cannot heal by retrying ends the iteration with ``ClientError``.

``drop_connection()`` cuts the connection as a network failure would (tests and the
demo use it); the subscription resumes by itself.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import httpx

from client.config import ClientOptions
from client.errors import ClientError, protocol_error, unreachable
from client.sequencer import Backfill, Reset, Sequencer
from client.stats import TransportStats
from eventlog.errors import EventLogError
from eventlog.events import Event, parse_cursor, validate_channel

logger = logging.getLogger("client")


# --- Signals: what a transport tells the sequencer ------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The server confirmed the subscription; ``head`` is where a live-only one starts."""

    head: int | None


@dataclass(frozen=True, slots=True)
class ResetSignal:
    oldest: int


Signal = Ready | ResetSignal | Event


def event_from_json(obj: Any) -> Event:
    """An Event from its decoded JSON, checked, since it comes from the network."""
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("channel"), str)
        or not isinstance(obj.get("seq"), int)
        or isinstance(obj.get("seq"), bool)
        or not isinstance(obj.get("time"), str)
        or "data" not in obj
    ):
        raise protocol_error(f"not an event: {obj!r:.200}")
    return Event(channel=obj["channel"], seq=obj["seq"], data=obj["data"], time=obj["time"])


def backoff_seconds(failures: int, options: ClientOptions) -> float:
    """Full jitter: uniform up to min(max, min * 2**failures)."""
    ceiling = min(options.reconnect_max_seconds, options.reconnect_min_seconds * 2**failures)
    return random.uniform(0, ceiling)  # noqa: S311 (spreading reconnects, not security)


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, OSError, TimeoutError)
"""Failures of a connection that a reconnect may heal."""


# --- The subscription -----------------------------------------------------------------------


class _Closed:
    """Queued when a subscription closes, to end a consumer that waits in ``__anext__``."""


_CLOSED = _Closed()


class Subscription(abc.ABC):
    """One channel's events, exactly once and in seq order; an async iterator.

    ``cursor``: the last seq delivered. ``stats``: what it cost (``TransportStats``).
    ``resets``: each time history after the position was gone.
    """

    def __init__(
        self,
        *,
        channel: str,
        after: int | None,
        backfill: Backfill | None,
        options: ClientOptions,
        on_reset: Callable[[Reset], None] | None = None,
        stats: TransportStats | None = None,
    ) -> None:
        self.channel = channel
        self.cursor: int | None = after
        self.stats = stats if stats is not None else TransportStats()
        self.options = options
        self._sequencer = Sequencer(
            channel=channel,
            after=after,
            backfill=backfill,
            stats=self.stats,
            on_reset=on_reset,
            backfill_attempts=options.backfill_attempts,
            backfill_pause_seconds=options.backfill_pause_seconds,
        )
        self._queue: asyncio.Queue[Event | BaseException | _Closed] = asyncio.Queue(
            maxsize=options.queue_events
        )
        self._ready = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._closed = False
        self.on_close: Callable[[Subscription], None] | None = None

    @property
    def resets(self) -> list[Reset]:
        return self._sequencer.resets

    @property
    def position(self) -> int | None:
        """The last seq accepted from the transport (at or ahead of ``cursor``)."""
        return self._sequencer.position

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _Closed):
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # the pump has stopped: every later call raises too
            raise item
        self.cursor = item.seq
        self.stats.events += 1
        return item

    async def close(self) -> None:
        """Stop receiving; an iteration in progress ends."""
        if self._closed:
            return
        self._closed = True
        if self._pump is not None:
            self._pump.cancel()
            with suppress(asyncio.CancelledError):
                await self._pump
        try:
            await self._end()
        finally:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_CLOSED)
            if self.on_close is not None:
                self.on_close(self)

    @abc.abstractmethod
    async def drop_connection(self) -> None:
        """Cut the connection as a network failure would; the subscription resumes by itself."""

    # --- for the transports ---------------------------------------------------------------------

    @abc.abstractmethod
    async def _serve(self) -> None:
        """Run the transport until cancelled, passing what arrives to ``_emit``."""

    async def _begin(self) -> None:  # noqa: B027 (a hook: nothing to do by default)
        """Called once the pump runs, before ``subscribe()`` waits for ``Ready``."""

    async def _end(self) -> None:  # noqa: B027 (a hook)
        """Release what the subscription holds (after the pump stopped)."""

    async def _start(self) -> None:
        """Start the pump and wait until the server confirms the subscription."""
        self._pump = asyncio.create_task(self._run(), name=f"subscription:{self.channel}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await self._begin()
            await asyncio.wait(
                {ready, self._pump},
                timeout=self.options.request_timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except Exception:
            await self.close()
            raise
        finally:
            ready.cancel()
        if self._ready.is_set():
            return
        failure = self._failure
        await self.close()
        if failure is not None:
            raise failure
        raise ClientError(
            status=None,
            code="timeout",
            detail=f"the subscription to {self.channel!r} was not confirmed within "
            f"{self.options.request_timeout_seconds:g} s",
        )

    async def _run(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, EventLogError):
                exc = ClientError.refused_locally(exc)
            self._failure = exc
            await self._queue.put(exc)

    async def _emit(self, signal: Signal) -> None:
        if isinstance(signal, Event):
            delivered = await self._sequencer.push(signal)
        elif isinstance(signal, Ready):
            delivered = await self._sequencer.start(signal.head)
            self._on_ready()
        else:
            delivered = await self._sequencer.reset(signal.oldest)
        for event in delivered:
            await self._queue.put(event)

    async def _emit_events(self, events: Sequence[Event]) -> None:
        for event in await self._sequencer.push_all(events):
            await self._queue.put(event)

    def _on_ready(self) -> None:
        self._ready.set()


class ReconnectingSubscription(Subscription):
    """A subscription that owns its connection (polling, SSE): one session at a time.

    A session ends when the server closes it (reconnect after ``_close_delay``), when
    ``drop_connection`` cancels it (the same), or with a failure. Failures that may
    heal (network errors, 429/5xx) are retried with backoff, honoring ``Retry-After``;
    before the first confirmation only a refusal with ``Retry-After`` is, so that
    ``subscribe()`` against an unreachable server fails instead of hanging.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session_task: asyncio.Task[None] | None = None
        self._healthy = False

    @abc.abstractmethod
    async def _session(self) -> None:
        """One connection: emit what arrives; return when the server ends it."""

    def _close_delay(self) -> float:
        """Pause before reconnecting after the server closed, or after a drop."""
        return 0.0

    def _min_error_delay(self) -> float:
        return 0.0

    async def _after_drop(self) -> None:
        """Called in the pump after ``drop_connection`` cut a session."""

    def _on_ready(self) -> None:
        self._healthy = True
        super()._on_ready()

    async def drop_connection(self) -> None:
        task = self._session_task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task})

    async def _serve(self) -> None:
        failures = 0
        while True:
            self.stats.connections += 1
            if self.stats.connections > 1:
                self.stats.reconnects += 1
            self._healthy = False
            self._session_task = asyncio.create_task(self._session())
            try:
                await self._session_task
                delay = self._close_delay()
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the subscription is closing
                await self._after_drop()
                delay = self._close_delay()
            except ClientError as exc:
                if not exc.retryable or (not self._ready.is_set() and exc.retry_after is None):
                    raise
                failures = 0 if self._healthy else failures + 1
                delay = exc.retry_after if exc.retry_after is not None else 0.0
                delay = max(delay, self._min_error_delay(), backoff_seconds(failures, self.options))
                logger.warning("%s: %s; retrying in %.1f s", self.channel, exc, delay)
            except TRANSIENT_ERRORS as exc:
                if not self._ready.is_set():
                    raise unreachable(exc) from exc
                failures = 0 if self._healthy else failures + 1
                delay = max(self._min_error_delay(), backoff_seconds(failures, self.options))
                logger.warning(
                    "%s: connection failed (%s); reconnecting in %.1f s",
                    self.channel,
                    type(exc).__name__,
                    delay,
                )
            finally:
                self._session_task = None
            if delay > 0:
                await asyncio.sleep(delay)


# --- The transport --------------------------------------------------------------------------


def checked_channel(channel: str) -> str:
    try:
        return validate_channel(channel)
    except EventLogError as exc:
        raise ClientError.refused_locally(exc) from None


def checked_cursor(after: int | None) -> int | None:
    try:
        return None if after is None else parse_cursor(after)
    except EventLogError as exc:
        raise ClientError.refused_locally(exc) from None


class Transport(abc.ABC):
    """Subscribe and publish over one transport; an async context manager.

    ``stats`` counts the transport's own traffic (publishes; for WebSocket, the shared
    connection); each subscription has its own.
    """

    name: ClassVar[str]

    def __init__(self, *, options: ClientOptions) -> None:
        self.options = options
        self.stats = TransportStats()
        self.subscriptions: set[Subscription] = set()
        self._closed = False

    async def subscribe(
        self,
        channel: str,
        *,
        after: int | None = None,
        on_reset: Callable[[Reset], None] | None = None,
    ) -> Subscription:
        """Subscribe after the cursor ``after`` (0: all retained; None: live only, from the head).

        Returns once the server confirmed the subscription.
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        subscription = self._new_subscription(
            channel=checked_channel(channel), after=checked_cursor(after), on_reset=on_reset
        )
        self.subscriptions.add(subscription)
        subscription.on_close = self.subscriptions.discard
        await subscription._start()
        return subscription

    @abc.abstractmethod
    def _new_subscription(
        self, *, channel: str, after: int | None, on_reset: Callable[[Reset], None] | None
    ) -> Subscription: ...

    @abc.abstractmethod
    async def publish(self, channel: str, data: Any) -> Event:
        """Append ``data`` (any JSON value) to ``channel``; return the event with its seq."""

    async def start(self) -> None:  # noqa: B027 (a hook)
        """Connect, where the transport has a connection of its own."""

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self.subscriptions):
            await subscription.close()
        await self._end()

    async def _end(self) -> None:  # noqa: B027 (a hook)
        """Release the transport's own resources."""

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
