"""The stream route's mechanics, against a scripted ASGI server: what a stream costs in
tasks, who writes a live event, and how a stream ends when its writes fail or block."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from starlette.types import Message

from eventlog import EventLog
from sse_service.app import SseApp, create_app, open_gate
from sse_service.hub import HEARTBEAT_FRAME, Hub
from sse_service.settings import ServiceSettings
from sse_service.stream import DisconnectWatch

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"reader_interval_seconds": 0.01, "drain_seconds": 0.2}

_IDS = re.compile(rb"^id: (\d+)\ndata:", re.MULTILINE)  # events, not the preamble


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Connection:
    """One client as the ASGI server shows it to the app; the test decides what happens."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.writers: list[asyncio.Task[Any] | None] = []  # the task each body was written in
        self.ended = False
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()  # body writes wait for it, as uvicorn's for the socket
        self.writable.set()
        self.fail: Callable[[bytes], bool] = lambda body: False
        self._requested = False

    async def receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone  # a future, as uvicorn's receive waits on one
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        await self.writable.wait()
        body = message.get("body", b"")
        if self.fail(body):
            raise OSError("connection reset by peer")
        if body:
            self.bodies.append(body)
            self.writers.append(asyncio.current_task())
        self.ended = not message.get("more_body", False)

    def seqs(self) -> list[int]:
        return [int(seq) for body in self.bodies for seq in _IDS.findall(body)]


def stream_scope(channel: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": f"/channels/{channel}/stream",
        "query_string": b"",
        "headers": [],
    }


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 (state that the code under test changes)
            await asyncio.sleep(0.005)


@pytest.fixture
async def service(log: EventLog) -> AsyncIterator[SseApp]:
    app = create_app(log=log, settings=ServiceSettings(**FAST), gate=open_gate)
    assert isinstance(app, SseApp)
    yield app
    await app.state.hub.aclose()


def open_stream(app: SseApp, channel: str, connection: Connection) -> asyncio.Task[None]:
    return asyncio.create_task(app(stream_scope(channel), connection.receive, connection.send))


async def test_a_stream_is_one_task_and_the_feed_writes_live_events_itself(
    service: SseApp, log: EventLog
) -> None:
    hub: Hub = service.state.hub
    connections = [Connection() for _ in range(6)]
    streams = [open_stream(service, "live", c) for c in connections[:3]]
    await until(lambda: all(c.bodies for c in connections[:3]))  # the preamble
    before = asyncio.all_tasks()
    streams += [open_stream(service, "live", c) for c in connections[3:]]
    await until(lambda: all(c.bodies for c in connections))
    # Each stream is the request's own task: no heartbeat task, no disconnect listener.
    new = asyncio.all_tasks() - before
    assert set(streams[3:]) <= new
    assert [t.get_coro() for t in new - set(streams[3:])] == []
    await anyio.to_thread.run_sync(log.publish, "live", "hello")
    await until(lambda: all(c.seqs() == [1] for c in connections))
    # The parked streams were written by the feed's task, not woken to write themselves.
    feed_task = hub.feeds["live"].task
    assert [c.writers[-1] for c in connections] == [feed_task] * 6
    for connection in connections:
        connection.gone.set_result(None)
    await asyncio.gather(*streams)
    assert hub.open_streams == 0


async def test_the_client_leaving_ends_the_stream_and_frees_it(service: SseApp) -> None:
    hub: Hub = service.state.hub
    connection = Connection()
    stream = open_stream(service, "left", connection)
    await until(lambda: bool(connection.bodies))
    assert hub.open_streams == 1
    connection.gone.set_result(None)  # what uvicorn does when the connection is lost
    await stream
    assert hub.open_streams == 0
    assert hub.stats["closed_client_left"] == 1
    assert not any(feed.subscribers for feed in hub.feeds.values())


async def test_a_failed_write_ends_the_stream_and_frees_it(service: SseApp, log: EventLog) -> None:
    hub: Hub = service.state.hub
    healthy, failing = Connection(), Connection()
    failing.fail = lambda body: b"data:" in body  # the socket breaks on the first event
    streams = [open_stream(service, "breaks", c) for c in (healthy, failing)]
    await until(lambda: bool(healthy.bodies and failing.bodies))
    await anyio.to_thread.run_sync(log.publish, "breaks", 1)
    with pytest.raises(OSError, match="reset"):  # raised in the stream's task, for the server
        await streams[1]
    assert hub.open_streams == 1
    # The feed that made the failed write carried on: the other stream still gets events.
    await anyio.to_thread.run_sync(log.publish, "breaks", 2)
    await until(lambda: healthy.seqs() == [1, 2])
    healthy.gone.set_result(None)
    await streams[0]
    assert hub.open_streams == 0


async def test_a_direct_write_the_socket_cannot_take_is_finished_by_the_stream_in_order(
    service: SseApp, log: EventLog
) -> None:
    connection = Connection()
    stream = open_stream(service, "backed-up", connection)
    await until(lambda: bool(connection.bodies))
    connection.writable.clear()  # the socket is full
    for n in range(3):
        await anyio.to_thread.run_sync(log.publish, "backed-up", n)
    await until(lambda: service.state.hub.stats["events_read"] >= 3)
    assert connection.seqs() == []
    connection.writable.set()  # the client reads again
    await until(lambda: connection.seqs()[-1:] == [3])
    assert connection.seqs() == [1, 2, 3]
    connection.gone.set_result(None)
    await stream


async def test_a_quiet_stream_gets_a_heartbeat_when_its_wait_times_out(log: EventLog) -> None:
    settings = ServiceSettings(**FAST, heartbeat_seconds=0.05)
    service = create_app(log=log, settings=settings, gate=open_gate)
    connection = Connection()
    stream = open_stream(service, "quiet", connection)
    await until(lambda: connection.bodies.count(HEARTBEAT_FRAME) >= 2)
    assert connection.bodies[0].startswith(b"retry: ")
    connection.gone.set_result(None)
    await stream
    await service.state.hub.aclose()


async def test_a_stream_blocked_in_a_write_is_cut_at_the_end_of_the_drain(
    service: SseApp, log: EventLog
) -> None:
    hub: Hub = service.state.hub
    connection = Connection()
    stream = open_stream(service, "stalled", connection)
    await until(lambda: bool(connection.bodies))
    connection.writable.clear()  # and stays full
    await anyio.to_thread.run_sync(log.publish, "stalled", 1)
    await until(lambda: hub.stats["events_read"] >= 1)
    hub.begin_drain()
    await stream  # ended by the drain's deadline, though its write never completed
    assert hub.open_streams == 0
    assert connection.seqs() == []


async def test_the_disconnect_watch_listens_in_a_task_when_receive_waits_on_no_future() -> None:
    left = asyncio.Event()
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0)  # yields a bare None: no future to put a callback on
        await left.wait()
        return {"type": "http.disconnect"}

    gone = asyncio.Event()
    watch = DisconnectWatch(receive, gone.set)
    left.set()
    with anyio.fail_after(5):
        await gone.wait()
    watch.close()


async def test_head_gets_the_stream_s_headers_and_no_stream(service: SseApp) -> None:
    hub: Hub = service.state.hub
    started: list[Message] = []
    connection = Connection()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.append(message)
        await connection.send(message)

    scope = {**stream_scope("peek"), "method": "HEAD"}
    await service(scope, connection.receive, send)  # returns: an endless body never starts
    [start] = started
    assert (start["status"], dict(start["headers"])[b"content-type"]) == (
        200,
        b"text/event-stream; charset=utf-8",
    )
    assert connection.ended
    assert connection.bodies == []
    assert hub.open_streams == 0
    assert hub.stats["closed_client_left"] == 0


async def test_another_method_on_a_stream_path_is_refused_with_a_405_problem(
    service: SseApp,
) -> None:
    transport = httpx.ASGITransport(app=service)
    async with httpx.AsyncClient(transport=transport, base_url="http://sse") as client:
        response = await client.post("/channels/news/stream", json={})
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "method_not_allowed"
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
