"""The push backplane: events pushed to the SSE tasks that have subscribers, not polled.

Without it every task polls the log once per reader interval for every channel it
serves, so the log's bill grows with tasks x channels, whether or not anything is
published. With it, a small function on the events table's stream
(``sse_service.relay``) publishes each new event once to a pub/sub broker
(ElastiCache Serverless for Valkey when deployed, a Redis protocol server
locally), and each task subscribes to the channels its clients want: the log is
read only to catch a stream up.

The log stays the truth; the broker is a fast path that may drop messages (pub/sub
is at most once: a subscriber that is not connected misses what is published
meanwhile). So a feed in this task reads the log, from where it is, every time a
subscription to its channel is confirmed: the first time, and again after every
reconnection. Whatever was published before the confirmation was in the log
before it (the relay publishes only what the stream carries, which is written);
whatever is published after it arrives on the connection. ElastiCache also cuts a
subscriber whose output backlog passes 32 MiB, or 8 MiB for 60 s ("Valkey and Redis
OSS configuration and limits", ElastiCache User Guide): that is one more
disconnection, followed by the same catch-up.

While the broker is unreachable the feeds fall back to polling the log (the
behaviour without a broker), and they return to push when a subscription is
confirmed again. ``BrokerLink`` owns the one connection and tells each feed when
its subscription is confirmed and when it is lost; ``hub.ChannelFeed`` does the
rest.

Classic ``SUBSCRIBE``/``PUBLISH``: ElastiCache Serverless runs cluster mode, where
classic pub/sub would broadcast to every shard, but it runs classic pub/sub
commands as sharded pub/sub internally (ElastiCache User Guide, "Overall best
practices": "in ElastiCache Serverless, classic pub/sub commands internally use
sharded pub/sub commands"), and one non-cluster connection through the serverless
endpoint keeps the client simple.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

BROKER_CHANNEL_PREFIX = "events:"
"""Broker channel names: this prefix and the log's channel name."""

RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 5.0
HEALTH_CHECK_SECONDS = 15.0
"""A ``PING`` on an idle connection this often, so a silently dead one is noticed."""


def broker_channel(channel: str) -> str:
    return BROKER_CHANNEL_PREFIX + channel


class Watcher(Protocol):
    """What a feed hears from the link (``hub.ChannelFeed``)."""

    def subscribed(self) -> None:
        """The subscription is confirmed: read the log from where you are, then live."""

    def unsubscribed(self) -> None:
        """The connection is gone: poll the log until ``subscribed`` comes again."""

    def pushed(self, payload: bytes) -> None:
        """An event's JSON, as the relay published it."""


class BrokerLink:
    """This task's one pub/sub connection, and the channels its feeds watch.

    Subscriptions are reconciled by one task: it compares the channels watched with
    the ones subscribed and sends the difference, so a feed that ends while a new one
    starts on the same channel can never leave the new one unsubscribed by an
    ``UNSUBSCRIBE`` sent late.
    """

    def __init__(self, url: str, *, client_factory: Callable[[str], Any] | None = None) -> None:
        self.url = url
        self._client_factory = client_factory or _redis_client
        self._watchers: dict[str, Watcher] = {}
        self._active: set[str] = set()  # confirmed on the current connection
        self._requested: set[str] = set()  # SUBSCRIBE sent, not confirmed yet
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.stats: dict[str, int] = {"connects": 0, "disconnects": 0, "pushed": 0}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sse-broker")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def watch(self, channel: str, watcher: Watcher) -> None:
        """Subscribe for ``watcher``; it hears ``subscribed`` once the subscription is live."""
        self._watchers[channel] = watcher
        if self.connected and channel in self._active:
            watcher.subscribed()  # live already: messages from now on reach it
        self._dirty.set()

    def unwatch(self, channel: str, watcher: Watcher) -> None:
        if self._watchers.get(channel) is watcher:
            del self._watchers[channel]
            self._dirty.set()

    async def _run(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            connects = self.stats["connects"]
            try:
                await self._serve()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("broker connection lost (%s); feeds poll the log meanwhile", exc)
            self._lost()
            if self.stats["connects"] > connects:
                delay = RECONNECT_MIN_SECONDS  # it was up: try again soon
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _serve(self) -> None:
        client = self._client_factory(self.url)
        pubsub = client.pubsub(ignore_subscribe_messages=False)
        reconciler: asyncio.Task[None] | None = None
        try:
            # A control subscription first: a connection with no channel is not in
            # subscribe mode, and the reader below needs one to wait on.
            await pubsub.subscribe(BROKER_CHANNEL_PREFIX)
            self.connected = True
            self.stats["connects"] += 1
            logger.info("broker connected; %d channels to subscribe", len(self._watchers))
            self._dirty.set()
            reconciler = asyncio.get_running_loop().create_task(self._reconcile(pubsub))
            while True:
                message = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
                if reconciler.done():
                    reconciler.result()  # its error is this connection's
                if message is None:
                    await pubsub.ping()  # an error here means the connection is gone
                    continue
                self._dispatch(message)
        finally:
            self.connected = False
            if reconciler is not None:
                reconciler.cancel()
                await asyncio.gather(reconciler, return_exceptions=True)
            await _quietly(pubsub.aclose())
            await _quietly(client.aclose())

    async def _reconcile(self, pubsub: Any) -> None:
        this = asyncio.current_task()
        while True:
            # redis-py can swallow a cancellation that lands in (UN)SUBSCRIBE's write; the
            # task still counts it, and must not wait again for work that will never come.
            if this is not None and this.cancelling():
                raise asyncio.CancelledError
            await self._dirty.wait()
            self._dirty.clear()
            wanted = set(self._watchers)
            subscribe = sorted(wanted - self._active - self._requested)
            unsubscribe = sorted(self._active - wanted)
            if subscribe:
                self._requested.update(subscribe)
                await pubsub.subscribe(*(broker_channel(channel) for channel in subscribe))
            if unsubscribe:
                self._active.difference_update(unsubscribe)
                await pubsub.unsubscribe(*(broker_channel(channel) for channel in unsubscribe))

    def _dispatch(self, message: dict[str, Any]) -> None:
        name = _text(message.get("channel"))
        if not name.startswith(BROKER_CHANNEL_PREFIX) or name == BROKER_CHANNEL_PREFIX:
            return
        channel = name[len(BROKER_CHANNEL_PREFIX) :]
        watcher = self._watchers.get(channel)
        kind = message.get("type")
        if kind == "subscribe":
            self._requested.discard(channel)
            self._active.add(channel)
            if watcher is not None:
                watcher.subscribed()
            else:
                self._dirty.set()  # no longer wanted: the reconciler unsubscribes
        elif kind == "unsubscribe":
            self._active.discard(channel)
            if watcher is not None:
                self._dirty.set()  # wanted again meanwhile: subscribe again
        elif kind == "message" and watcher is not None:
            self.stats["pushed"] += 1
            data = message.get("data")
            watcher.pushed(data if isinstance(data, bytes) else str(data).encode())

    def _lost(self) -> None:
        if self.stats["connects"]:
            self.stats["disconnects"] += 1
        self._active.clear()
        self._requested.clear()
        for watcher in list(self._watchers.values()):
            watcher.unsubscribed()


def _redis_client(url: str) -> Any:
    from redis.asyncio import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries inside redis-py: a reconnection there would resubscribe silently, and the
    # feeds must hear of every gap in the connection to catch up from the log.
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:  # closing a broken connection
        logger.debug("closing the broker connection failed", exc_info=True)
