"""The SSE push backplane: feeds pushed by a broker read the log only to catch up.

Three tiers: the feed's push logic against a link the test drives (no network);
the relay function; and the whole local stack with a real broker process that the
test stops and restarts mid-stream while events flow (fakeredis always; Debian's
``redis-server`` where installed, and always in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from eventlog import EventLog
from eventlog.events import Event, utc_timestamp
from sse_service.broker import broker_channel
from sse_service.hub import ChannelFeed
from sse_service.relay import Relay
from tests.sse.test_sse_hub import make_hub, seqs_until

pytest_plugins = ("tests.e2e_support",)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Link:
    """A broker link the test drives: it only remembers who watches what."""

    def __init__(self) -> None:
        self.watchers: dict[str, Any] = {}
        self.connected = True
        self.stats: dict[str, int] = {}

    def watch(self, channel: str, watcher: Any) -> None:
        self.watchers[channel] = watcher

    def unwatch(self, channel: str, watcher: Any) -> None:
        if self.watchers.get(channel) is watcher:
            del self.watchers[channel]


class CountingLog(EventLog):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0

    def read(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return super().read(*args, **kwargs)


@pytest.fixture
def counting_log(dynamodb: Any, events_table: str) -> CountingLog:
    from eventlog.config import Settings

    return CountingLog(settings=Settings(events_table_name=events_table), client=dynamodb)


def push(feed: ChannelFeed, log: EventLog, channel: str, seq: int) -> None:
    """What the relay would publish for ``seq``: the event as the log stored it."""
    event = log.read(channel, seq - 1, 1).events[0]
    assert event.seq == seq
    feed.pushed(event.encode().encode())


async def eventually(check: Any, *, what: str) -> None:
    """Until ``check()`` holds (the feed works on the event loop, between the test's awaits)."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"not within 5 s: {what}")


@contextlib.asynccontextmanager
async def pushed_stream(
    log: EventLog, *, cursor: int | None
) -> AsyncIterator[tuple[Link, ChannelFeed, AsyncGenerator[bytes, None]]]:
    """A stream of "news" on a hub with a driven broker link, once its feed has a position."""
    link = Link()
    hub = make_hub(log, broker=link, reader_interval_seconds=0.05)  # type: ignore[arg-type]
    stream = hub.stream(hub.admit("news"), cursor=cursor)
    first = asyncio.ensure_future(anext(stream))  # the preamble, once the feed has a position
    await eventually(
        lambda: "news" in hub.feeds and hub.feeds["news"].position is not None,
        what="the feed knows its position",
    )
    await first
    try:
        yield link, hub.feeds["news"], stream
    finally:
        await stream.aclose()
        await hub.aclose()


@pytest.mark.anyio
async def test_a_pushed_feed_reads_the_log_only_to_catch_up(counting_log: CountingLog) -> None:
    async with pushed_stream(counting_log, cursor=None) as (link, feed, stream):
        assert link.watchers["news"] is feed

        for n in range(3):  # published before the subscription: only the log has them
            await anyio.to_thread.run_sync(counting_log.publish, "news", n)
        feed.subscribed()  # the broker confirmed: one catch-up read
        await eventually(lambda: not feed.catch_up and feed.position == 3, what="caught up to 3")
        reads = counting_log.reads
        for n in range(3, 8):
            await anyio.to_thread.run_sync(counting_log.publish, "news", n)
            push(feed, counting_log, "news", n + 1)
        assert await seqs_until(stream, 8) == [1, 2, 3, 4, 5, 6, 7, 8]  # 1-3 from the catch-up
        await asyncio.sleep(0.3)  # six reader intervals: a polling feed would have read six times
        assert (
            counting_log.reads - reads == 5
        )  # push() above reads to build its message; the feed none


@pytest.mark.anyio
async def test_a_push_after_a_gap_or_twice_is_read_from_the_log_once(
    counting_log: CountingLog,
) -> None:
    async with pushed_stream(counting_log, cursor=0) as (_link, feed, stream):
        feed.subscribed()
        await eventually(lambda: not feed.catch_up, what="the catch-up read")
        for n in range(4):
            await anyio.to_thread.run_sync(counting_log.publish, "news", n)
        push(feed, counting_log, "news", 3)  # out of order: 1 and 2 were never pushed
        push(feed, counting_log, "news", 4)
        push(feed, counting_log, "news", 3)  # and a duplicate, as a retried relay batch sends
        assert await seqs_until(stream, 4) == [1, 2, 3, 4]


@pytest.mark.anyio
async def test_a_feed_polls_while_the_broker_is_lost_and_catches_up_when_it_is_back(
    counting_log: CountingLog,
) -> None:
    async with pushed_stream(counting_log, cursor=0) as (_link, feed, stream):
        feed.subscribed()
        feed.unsubscribed()  # the connection broke: pushes stop, the feed polls
        for n in range(3):
            await anyio.to_thread.run_sync(counting_log.publish, "news", n)
        assert await seqs_until(stream, 3) == [1, 2, 3]  # from polling alone
        feed.subscribed()  # back: a catch-up read, then push
        await anyio.to_thread.run_sync(counting_log.publish, "news", 3)
        push(feed, counting_log, "news", 4)
        assert await seqs_until(stream, 4) == [4]


# --- the relay ------------------------------------------------------------------------------------


class Published:
    def __init__(self, *, fail_on: int | None = None) -> None:
        self.messages: list[tuple[str, str]] = []
        self.fail_on = fail_on

    def publish(self, channel: str, message: str) -> int:
        if len(self.messages) == self.fail_on:
            raise ConnectionError("the broker is unreachable")
        self.messages.append((channel, message))
        return 1


def insert(seq: int, *, channel: str = "news", event: bool = True) -> dict[str, Any]:
    image: dict[str, Any] = {"channel": {"S": channel}, "seq": {"N": str(seq)}}
    if event:
        image["event"] = {
            "S": Event(channel=channel, seq=seq, data=seq, time=utc_timestamp()).encode()
        }
    return {"eventName": "INSERT", "dynamodb": {"NewImage": image, "SequenceNumber": str(seq)}}


def test_the_relay_publishes_each_event_once_to_its_channel() -> None:
    client = Published()
    records = [insert(1), insert(2, event=False), insert(3, channel="other")]
    assert Relay(client).handle(records) == {"batchItemFailures": []}
    assert [(name, Event.decode(body).seq) for name, body in client.messages] == [
        (broker_channel("news"), 1),
        (broker_channel("other"), 3),
    ]


def test_a_failed_publish_fails_the_rest_of_the_batch() -> None:
    client = Published(fail_on=1)
    result = Relay(client).handle([insert(1), insert(2), insert(3)])
    assert result == {"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]}


# --- the local stack with a broker that fails -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fakeredis_broker(port: int) -> Iterator[str]:
    from local.servers import child_service

    with child_service("local.broker", port, name="broker") as url:
        yield url


@contextlib.contextmanager
def redis_server_broker(port: int) -> Iterator[str]:
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


BROKERS = {"fakeredis": fakeredis_broker, "redis-server": redis_server_broker}


@pytest.fixture(params=sorted(BROKERS))
def broker_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "redis-server" and shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: .ci/run installs it (apt redis-server)")
        pytest.skip("redis-server is not installed here (CI installs it)")
    return kind


async def _publish(api: httpx.AsyncClient, url: str, numbers: range) -> None:
    for n in numbers:
        reply = await api.post(url, json={"data": n})
        reply.raise_for_status()
        await asyncio.sleep(0.05)


async def _subscribe(api: httpx.AsyncClient, url: str, seen: list[int], last: int) -> None:
    """Seqs from the SSE stream into ``seen`` until ``last``, reconnecting with Last-Event-ID."""
    headers: dict[str, str] = {}
    while not seen or seen[-1] < last:
        async with api.stream("GET", url, headers=headers) as reply:
            async for line in reply.aiter_lines():
                if line.startswith("id: "):
                    headers["Last-Event-ID"] = line[4:]
                elif line.startswith("data: {") and '"seq"' in line:
                    seen.append(Event.decode(line[6:]).seq)
                    if seen[-1] >= last:
                        return


async def _until(check: Any, *, seconds: float, what: str) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not within {seconds:.0f} s: {what}")


@pytest.mark.timeout(300)
def test_sse_loses_nothing_when_the_broker_stops_and_restarts_mid_stream(
    tmp_path: Path, broker_kind: str
) -> None:
    """Events before, during and after a broker outage: every one, once, in order.

    The events published while the broker is down are the last until it is back, so
    nothing pushed later can reveal them: the feed must poll the log while the broker
    is lost, and catch up when its subscription is confirmed again.
    """
    from tests.e2e_support import launched

    start_broker = BROKERS[broker_kind]
    port = _free_port()
    brokers = contextlib.ExitStack()
    url = brokers.enter_context(start_broker(port))
    with brokers, launched(tmp_path, extra_args=["--broker-url", url]) as (_process, stack):
        endpoints = stack.endpoints
        assert endpoints.sse_url is not None  # and its log API: publish through SSE itself
        health = f"{endpoints.sse_url}/healthz"
        publish_url = f"{endpoints.sse_url}/channels/failover/events"

        async def run() -> tuple[list[int], list[dict[str, Any]]]:
            token = await _token(endpoints.dev_token_url)
            states: list[dict[str, Any]] = []
            seen: list[int] = []
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as api:

                async def state() -> dict[str, Any]:
                    body: dict[str, Any] = (await api.get(health)).json()
                    return body

                async def has(n: int) -> bool:
                    return len(seen) >= n

                receiving = asyncio.create_task(
                    _subscribe(api, f"{endpoints.sse_url}/channels/failover/stream", seen, 60)
                )
                await _until(
                    lambda: _connected_with(state, channels=1), seconds=10, what="subscribed"
                )
                await _publish(api, publish_url, range(20))
                await _until(lambda: has(20), seconds=20, what="20 events pushed")
                states.append(await state())
                brokers.close()  # the broker stops: every subscription is cut
                await _publish(api, publish_url, range(20, 40))
                await _until(lambda: has(40), seconds=30, what="20 events while it is down")
                states.append(await state())
                brokers.enter_context(start_broker(port))  # and comes back
                await _until(lambda: _connected_with(state), seconds=30, what="reconnected")
                await _publish(api, publish_url, range(40, 60))
                with anyio.fail_after(30):
                    await receiving
                states.append(await state())
            return seen, states

        seen, (before, during, after) = asyncio.run(run())
    assert seen == list(range(1, 61)), "lost, repeated or out of order"
    assert before["broker"] == "connected"
    assert before["broker_pushed"] >= 20, "the stream was not pushed before the fault"
    assert during["broker"] == "disconnected"
    assert after["broker"] == "connected"
    assert after["broker_disconnects"] >= 1
    assert after["broker_pushed"] >= before["broker_pushed"] + 20, "push did not resume"


async def _connected_with(state: Any, *, channels: int = 0) -> bool:
    body = await state()
    return bool(body.get("broker") == "connected" and body.get("channels", 0) >= channels)


async def _token(url: str | None) -> str:
    assert url is not None
    async with httpx.AsyncClient(timeout=10) as api:
        reply = await api.post(url)
        reply.raise_for_status()
        token: str = reply.json()["token"]
        return token


class _SwallowingPubSub:
    """A pubsub whose UNSUBSCRIBE swallows a cancellation, as redis-py's write can."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.unsubscribing = asyncio.Event()

    async def subscribe(self, *names: str) -> None:
        for name in names:
            self.messages.put_nowait({"type": "subscribe", "channel": name})

    async def unsubscribe(self, *_names: str) -> None:
        self.unsubscribing.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 (redis-py's signature)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                return await self.messages.get()
        return None

    async def ping(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class _Client:
    def __init__(self, pubsub: _SwallowingPubSub) -> None:
        self._pubsub = pubsub

    def pubsub(self, **_options: Any) -> _SwallowingPubSub:
        return self._pubsub

    async def aclose(self) -> None:
        pass


class _Watcher:
    def __init__(self) -> None:
        self.live = asyncio.Event()

    def subscribed(self) -> None:
        self.live.set()

    def unsubscribed(self) -> None:
        self.live.clear()

    def pushed(self, payload: bytes) -> None:
        pass


@pytest.mark.anyio
async def test_the_link_closes_even_when_a_cancelled_unsubscribe_swallows_the_cancel() -> None:
    from sse_service.broker import BrokerLink

    pubsub = _SwallowingPubSub()
    link = BrokerLink("redis://unused", client_factory=lambda _url: _Client(pubsub))
    link.start()
    watcher = _Watcher()
    link.watch("news", watcher)
    with anyio.fail_after(5):
        await watcher.live.wait()
    link.unwatch("news", watcher)  # the reconciler unsubscribes, and is stuck in it
    with anyio.fail_after(5):
        await pubsub.unsubscribing.wait()
    with anyio.fail_after(5):  # the service's shutdown: it must not wait forever
        await link.aclose()
    assert not link.connected
