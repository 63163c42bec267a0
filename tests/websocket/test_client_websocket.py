"""The reference client's WebSocket transport against a small server that speaks the protocol.

The server below plays API Gateway and the route handlers in a few lines, on the
real event log (in-process moto), and can misbehave the way a real deployment can:
fan-out frames repeated, reordered or lost, replies in another order than the
requests, a connection closed under the client, pongs that never come. Gaps are
filled over the log's HTTP API (the code the polling API and the SSE service serve it
with), by uvicorn on 127.0.0.1 on the same log.
The same hardest cases against the real gateway, handlers and fan-out:
``tests/websocket/test_client_websocket_gateway.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from client import ClientError, ClientOptions, Reset, open_transport
from client.websocket import WebSocketTransport, with_token
from eventlog.endpoints import Endpoints
from eventlog.errors import EventLogError
from eventlog.events import Event, encode_json
from eventlog.log import EventLog
from tests.client_support import (
    RETENTION_SECONDS,
    Clock,
    deliver_in_disorder,
    eventually,
    live,
    log_api_app,
    seqs,
    take,
)

pytestmark = pytest.mark.anyio

OPTIONS = ClientOptions(wait_seconds=1, reconnect_min_seconds=0.01)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeGateway:
    """The WebSocket protocol over the event log, with switches to misbehave."""

    log: EventLog
    fanout: bool = True
    """Post each published event to the channel's subscribers (off: the test posts)."""
    answer_pings: bool = True
    hold_publishes: int = 0
    """Hold this many publishes, then answer them in reverse order."""
    echo_ids: bool = True
    """Echo a frame's ``id`` in its reply (off: a server older than request ids)."""
    connections: list[ServerConnection] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str | None] = field(default_factory=list)
    subscribers: dict[str, set[ServerConnection]] = field(default_factory=dict)
    _held: list[tuple[ServerConnection, dict[str, Any]]] = field(default_factory=list)

    def process_request(self, _connection: ServerConnection, request: Request) -> Response | None:
        token = parse_qs(urlsplit(request.path).query).get("token", [None])[0]
        self.tokens.append(token)
        if token == "bad":
            body = b'{"message": "Unauthorized"}'
            return Response(HTTPStatus.UNAUTHORIZED, "Unauthorized", Headers(), body)
        return None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.received.append(frame)
                await self.on_frame(ws, frame)
        finally:
            for members in self.subscribers.values():
                members.discard(ws)

    def reply(self, frame: dict[str, Any], reply: dict[str, Any]) -> str:
        if self.echo_ids and "id" in frame:
            reply = {**reply, "id": frame["id"]}
        return encode_json(reply)

    async def on_frame(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        action, channel = frame["action"], frame.get("channel", "")
        if action == "ping":
            if self.answer_pings:
                await ws.send(encode_json({"type": "pong"}))
        elif action == "subscribe":
            if channel.startswith("secret"):
                await ws.send(self.reply(frame, error("forbidden", "no subscribe scope")))
                return
            self.subscribers.setdefault(channel, set()).add(ws)
            head = self.log.head(channel)
            await ws.send(
                self.reply(frame, {"type": "subscribed", "channel": channel, "head": head})
            )
            if frame.get("after") is not None:
                await self.backlog(ws, channel, frame["after"], head)
        elif action == "unsubscribe":
            self.subscribers.get(channel, set()).discard(ws)
            await ws.send(encode_json({"type": "unsubscribed", "channel": channel}))
        elif action == "publish":
            self._held.append((ws, frame))
            if len(self._held) >= self.hold_publishes:
                held, self._held = self._held, []
                for sender, publish in reversed(held):
                    await self.publish(sender, publish)

    async def backlog(self, ws: ServerConnection, channel: str, after: int, head: int) -> None:
        while True:
            page = self.log.read(channel, after)
            if page.reset:
                frame = {"type": "reset", "channel": channel, "oldest": page.oldest}
                await ws.send(encode_json(frame))
            for event in page.events:
                await ws.send(event_frame(event))
            if page.head is not None or page.next >= head or not page.events:
                return
            after = page.next

    async def publish(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        if frame["channel"].startswith("secret"):
            await ws.send(self.reply(frame, error("forbidden", "no publish scope")))
            return
        try:
            event = self.log.publish(frame["channel"], frame["data"])
        except EventLogError as exc:
            await ws.send(self.reply(frame, error(exc.code, exc.message)))
            return
        reply = {"type": "published", "event": json.loads(event.encode())}
        await ws.send(self.reply(frame, reply))
        if self.fanout:
            await self.post(event)

    async def post(self, event: Event, *, times: int = 1) -> None:
        """What the fan-out does: the event frame to each subscriber of its channel."""
        for ws in list(self.subscribers.get(event.channel, ())):
            for _ in range(times):
                await ws.send(event_frame(event))


def event_frame(event: Event) -> str:
    return '{"type":"event","event":' + event.encode() + "}"


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


@pytest.fixture
def log_api_url(event_log: EventLog) -> Iterator[str]:
    # The fake gateway checks no token, and neither does this app: auth has its own tests.
    with live(log_api_app(event_log)) as server:
        yield server.url("")


@pytest.fixture
def gateway(event_log: EventLog) -> FakeGateway:
    return FakeGateway(log=event_log)


@pytest.fixture
async def endpoints(gateway: FakeGateway, log_api_url: str) -> AsyncIterator[Endpoints]:
    server: Server
    async with serve(
        gateway.handler,
        "127.0.0.1",
        0,
        process_request=gateway.process_request,
        compression=None,
        ping_interval=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield Endpoints(websocket_url=f"ws://127.0.0.1:{port}", polling_api_url=log_api_url)


def sent(gateway: FakeGateway, action: str) -> list[dict[str, Any]]:
    """The frames of ``action`` the client sent, without their request ids."""
    frames = [frame for frame in gateway.received if frame["action"] == action]
    return [{k: v for k, v in frame.items() if k != "id"} for frame in frames]


# --- delivery -------------------------------------------------------------------------------


async def test_backlog_then_live_and_publish_acknowledged(
    endpoints: Endpoints, gateway: FakeGateway, event_log: EventLog
) -> None:
    before = [event_log.publish("news", n) for n in range(3)]
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=1)
        assert await take(subscription, 2) == before[1:]
        published = await transport.publish("news", {"n": 3})
        assert published.seq == 4
        assert published.data == {"n": 3}
        assert await take(subscription, 1) == [published]
        assert subscription.stats.requests == 1  # the subscribe frame
        assert transport.stats.requests == 2  # subscribe and publish, on the one connection
    assert sent(gateway, "subscribe") == [{"action": "subscribe", "channel": "news", "after": 1}]


async def test_live_only_subscribe_omits_after_and_starts_at_the_head(
    endpoints: Endpoints, gateway: FakeGateway, event_log: EventLog
) -> None:
    event_log.publish("news", "before")
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        assert subscription.position == 1
        published = await transport.publish("news", "after")
        assert await take(subscription, 1) == [published]
    assert sent(gateway, "subscribe") == [{"action": "subscribe", "channel": "news"}]


async def test_repeated_and_reordered_frames_come_out_once_in_order(
    endpoints: Endpoints, gateway: FakeGateway, event_log: EventLog
) -> None:
    gateway.fanout = False
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        await deliver_in_disorder(event_log, subscription, gateway.post)
        await eventually(lambda: subscription.stats.duplicates == 3, what="three duplicates")


async def test_a_lost_frame_is_backfilled_over_the_log_api(
    endpoints: Endpoints, gateway: FakeGateway, event_log: EventLog
) -> None:
    gateway.fanout = False
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        events = [event_log.publish("news", n) for n in range(4)]
        for index in (0, 1, 3):  # event 3 (index 2) is never posted
            await gateway.post(events[index])
        assert await take(subscription, 4) == events
        assert subscription.stats.backfills == 1
        assert subscription.stats.requests == 2  # the subscribe frame and one GET


async def test_a_reset_frame_is_accepted(
    endpoints: Endpoints, event_log: EventLog, clock: Clock
) -> None:
    for n in range(3):
        event_log.publish("news", n)
    clock.advance(RETENTION_SECONDS + 1)
    retained = [event_log.publish("news", n) for n in range(3, 5)]
    seen: list[Reset] = []
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=0, on_reset=seen.append)
        assert await take(subscription, 2) == retained
    assert seen == subscription.resets == [Reset(channel="news", after=0, oldest=4)]


# --- connections ----------------------------------------------------------------------------


async def test_a_closed_connection_reconnects_and_resubscribes_from_the_cursor(
    endpoints: Endpoints, gateway: FakeGateway, event_log: EventLog
) -> None:
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        news = await transport.subscribe("news", after=0)
        sport = await transport.subscribe("sport")
        first = await transport.publish("news", 1)
        assert await take(news, 1) == [first]
        await gateway.connections[0].close()  # e.g. API Gateway's 2 h limit
        missed = event_log.publish("news", "while away")  # no one to post it to
        await eventually(lambda: len(gateway.connections) == 2, what="the reconnect")
        assert await take(news, 1) == [missed]  # from the backlog of the new subscribe
        goal = await transport.publish("sport", "goal")
        assert await take(sport, 1) == [goal]
        assert transport.stats.reconnects == 1
        assert news.stats.reconnects == sport.stats.reconnects == 1
    resubscribes = sent(gateway, "subscribe")[2:]
    assert {"action": "subscribe", "channel": "news", "after": 1} in resubscribes
    assert {"action": "subscribe", "channel": "sport", "after": 0} in resubscribes


async def test_an_expired_frame_reconnects_with_a_fresh_token_from_the_cursor(
    endpoints: Endpoints, gateway: FakeGateway, event_log: EventLog
) -> None:
    issued: list[str] = []

    async def tokens() -> str:
        issued.append(f"token-{len(issued) + 1}")
        return issued[-1]

    async with open_transport("websocket", endpoints, token=tokens, options=OPTIONS) as transport:
        news = await transport.subscribe("news", after=0)
        first = await transport.publish("news", 1)
        assert await take(news, 1) == [first]
        missed = event_log.publish("news", "after the expiry")  # what the fan-out held back
        # The frame alone makes the client reconnect: this server does not even close.
        await gateway.connections[0].send(encode_json({"type": "expired", "message": "m"}))
        await eventually(lambda: len(gateway.connections) == 2, what="the reconnect")
        assert await take(news, 1) == [missed]
        assert news.stats.duplicates == 0
    assert gateway.tokens == ["token-1", "token-2"], "the reconnect asked for a fresh token"
    assert {"action": "subscribe", "channel": "news", "after": 1} in sent(gateway, "subscribe")


async def test_drop_connection_resumes_every_subscription(
    endpoints: Endpoints, gateway: FakeGateway
) -> None:
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=0)
        first = await transport.publish("news", 1)
        assert await take(subscription, 1) == [first]
        await subscription.drop_connection()
        await eventually(lambda: len(gateway.connections) == 2, what="the reconnect")
        second = await transport.publish("news", 2)
        assert await take(subscription, 1) == [second]
        assert subscription.stats.duplicates <= 1  # the backlog may repeat what was live


async def test_keepalive_pings_and_a_missing_pong_means_a_dead_connection(
    endpoints: Endpoints, gateway: FakeGateway
) -> None:
    options = ClientOptions(
        keepalive_seconds=0.05, pong_timeout_seconds=0.2, reconnect_min_seconds=0.01
    )
    async with open_transport("websocket", endpoints, options=options) as transport:
        await eventually(lambda: len(sent(gateway, "ping")) >= 2, what="two pings")
        assert len(gateway.connections) == 1  # answered: the connection stays
        gateway.answer_pings = False
        await eventually(lambda: len(gateway.connections) == 2, what="a reconnect")
        # the client counts the reconnect once its new connection is ready, a moment later
        await eventually(lambda: transport.stats.reconnects >= 1, what="the count")


async def test_replies_in_another_order_are_matched_by_their_echoed_ids(
    endpoints: Endpoints, gateway: FakeGateway
) -> None:
    # Answered in reverse: the refusal of the second comes before the first's acknowledgement.
    gateway.hold_publishes = 3
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        first, refused, last = await asyncio.gather(
            transport.publish("news", "first"),
            transport.publish("secret.plans", "refused"),
            transport.publish("news", "first"),  # the same channel and data as the first
            return_exceptions=True,
        )
    assert isinstance(refused, ClientError)
    assert refused.code == "forbidden"
    assert isinstance(first, Event)
    assert isinstance(last, Event)
    assert (first.seq, last.seq) == (2, 1)  # each got its own reply, not the other's
    ids = [frame["id"] for frame in gateway.received if frame["action"] == "publish"]
    assert len(set(ids)) == 3  # every request its own id


async def test_without_echoed_ids_replies_are_matched_by_channel_and_data(
    endpoints: Endpoints, gateway: FakeGateway
) -> None:
    gateway.echo_ids = False
    gateway.hold_publishes = 5
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        replies = await asyncio.gather(
            transport.publish("news", "a"),
            transport.publish("news", 1),
            transport.publish("news", True),  # equal to 1 in Python, not in JSON
            transport.publish("news", {"b": [1.5]}),
            transport.publish("other", "c"),
        )
    assert [encode_json(event.data) for event in replies] == [
        '"a"',
        "1",
        "true",
        '{"b":[1.5]}',
        '"c"',
    ]
    assert [event.channel for event in replies] == ["news"] * 4 + ["other"]
    # Answered in reverse: the first publish got the last seq of its channel.
    assert seqs(list(replies)) == [4, 3, 2, 1, 1]


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("echo_ids", [True, False], ids=["ids", "no ids"])
async def test_an_error_frame_for_a_publish_raises_its_code(
    endpoints: Endpoints, gateway: FakeGateway, echo_ids: bool
) -> None:
    gateway.echo_ids = echo_ids
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        with pytest.raises(ClientError) as refused:
            await transport.publish("news", "x" * 40_000)
        assert (refused.value.status, refused.value.code) == (None, "event_too_large")
        assert transport.stats.refusals == 1
        with pytest.raises(ClientError) as local:
            await transport.publish("no spaces", 1)
        assert local.value.code == "invalid_channel"
        ok = await transport.publish("news", "fits")  # the connection stays open
        assert ok.seq == 1


async def test_an_error_frame_for_a_subscribe_raises_from_subscribe(
    endpoints: Endpoints, gateway: FakeGateway
) -> None:
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        with pytest.raises(ClientError) as refused:
            await transport.subscribe("secret.plans")
        assert refused.value.code == "forbidden"
        assert not transport.subscriptions
        subscription = await transport.subscribe("news")  # the connection is still usable
        assert subscription.position == 0


async def test_the_token_goes_in_the_query_and_a_refused_handshake_raises(
    endpoints: Endpoints, gateway: FakeGateway
) -> None:
    async with open_transport("websocket", endpoints, token="t0k+en", options=OPTIONS):
        pass
    assert gateway.tokens == ["t0k+en"]
    with pytest.raises(ClientError) as refused:
        async with open_transport("websocket", endpoints, token="bad", options=OPTIONS):
            pass
    assert (refused.value.status, refused.value.code) == (401, "http_401")
    assert refused.value.detail == "Unauthorized"


def test_with_token_keeps_the_url_query() -> None:
    assert with_token("wss://h/ws?x=1", "a b") == "wss://h/ws?x=1&token=a+b"
    assert with_token("wss://h/ws", None) == "wss://h/ws"


async def test_a_second_subscription_to_one_channel_needs_another_connection(
    endpoints: Endpoints,
) -> None:
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        assert isinstance(transport, WebSocketTransport)
        await transport.subscribe("news")
        with pytest.raises(ValueError, match="another transport"):
            await transport.subscribe("news", after=0)
