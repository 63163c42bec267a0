"""The WebSocket client's hardest cases against the real gateway, handlers and fan-out.

``tests/websocket/test_client_websocket.py`` drives the client against a few-line fake of the
server, which can misbehave at will. Here the same cases run against what the local
stack runs: the local API Gateway (``local.websocket_gateway``), the real route
handlers and the real fan-out code posting through the gateway's @connections API, on
in-process moto. The disorder a deployment produces is produced the way it happens
there: the fan-out delivers events in another order, twice, or not at all, and
concurrent publishes are answered by handlers that finish in another order.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import anyio.to_thread
import pytest

from client import ClientOptions, open_transport
from eventlog.endpoints import Endpoints
from eventlog.events import Event, encode_json
from eventlog.log import EventLog
from local.websocket_gateway import LocalWebSocketApi
from tests.client_support import deliver_in_disorder, eventually, live, log_api_app, seqs, take
from websocket_api import frames, management, routes
from websocket_api.config import MANAGEMENT_ENDPOINT_ENV
from websocket_api.connections import Connections
from websocket_api.fanout import Fanout

pytestmark = pytest.mark.anyio

OPTIONS = ClientOptions(wait_seconds=1, reconnect_min_seconds=0.01)
SAFETY_TIMEOUT_SECONDS = 10.0
"""Only so that a regression fails instead of hanging; nothing is timed with it."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ReversedPublishes:
    """The publish route, holding the first ``count`` invocations and running them last first:
    their ``published`` replies then leave in the reverse order of their arrival."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.arrived = 0
        self.turn = 0
        self.ran: list[int] = []  # arrival numbers, in the order the handlers ran
        self._turns = threading.Condition()

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        with self._turns:
            mine = self.arrived
            self.arrived += 1
            self._turns.notify_all()
            if mine >= self.count:
                mine = -1  # past the held ones: no turn to wait for
            else:
                assert self._turns.wait_for(
                    lambda: self.arrived >= self.count and self.turn == self.count - 1 - mine,
                    SAFETY_TIMEOUT_SECONDS,
                )
                self.ran.append(mine)
        try:
            return routes.publish(event, context)
        finally:
            with self._turns:
                if mine >= 0:
                    self.turn += 1
                self._turns.notify_all()


class Stack:
    """The gateway and handlers on moto; ``deliver`` is the fan-out for one event."""

    def __init__(self, gateway: LocalWebSocketApi, fanout: Fanout) -> None:
        self.gateway = gateway
        self.fanout = fanout

    async def deliver(self, event: Event) -> None:
        await anyio.to_thread.run_sync(
            lambda: self.fanout.deliver(event.channel, frames.event(event.encode()))
        )


@pytest.fixture
def services(
    dynamodb: Any, event_log: EventLog, connections_table: str
) -> Iterator[routes.Services]:
    chosen = routes.Services(
        log=event_log,
        connections=Connections(table_name=connections_table, client=dynamodb),
        management_client=lambda endpoint: management.new_client(endpoint, max_pool_connections=8),
        claims_required=False,  # auth has its own tests; these are about disorder
    )
    routes.use_services(chosen)
    yield chosen
    routes.use_services(None)


@pytest.fixture
def log_api_url(event_log: EventLog) -> Iterator[str]:
    with live(log_api_app(event_log)) as server:
        yield server.url("")


@pytest.fixture
def replies_reversed() -> ReversedPublishes:
    return ReversedPublishes(5)


@pytest.fixture
async def stack(
    services: routes.Services,
    replies_reversed: ReversedPublishes,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    gateway = LocalWebSocketApi(routes={**routes.ROUTES, "publish": replies_reversed})
    await gateway.start()
    # The handlers reply through this gateway's @connections API, as the local stack sets up.
    monkeypatch.setenv(MANAGEMENT_ENDPOINT_ENV, gateway.management_endpoint)
    fanout = Fanout(
        connections=services.connections,
        client=management.new_client(gateway.management_endpoint, max_pool_connections=4),
        workers=4,
    )
    try:
        yield Stack(gateway, fanout)
    finally:
        fanout._executor.shutdown()
        await gateway.stop()


@pytest.fixture
def endpoints(stack: Stack, log_api_url: str) -> Endpoints:
    return Endpoints(websocket_url=stack.gateway.url, polling_api_url=log_api_url)


async def test_repeated_and_reordered_deliveries_come_out_once_in_order(
    endpoints: Endpoints, stack: Stack, event_log: EventLog
) -> None:
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        await deliver_in_disorder(event_log, subscription, stack.deliver)
        # Nothing else came out: the next event is the next one the application sees.
        marker = event_log.publish("news", "marker")
        await stack.deliver(marker)
        assert await take(subscription, 1) == [marker]
        # The three repeated deliveries were dropped (and so was any delivery of an event
        # the client had already backfilled while waiting for it).
        assert subscription.stats.duplicates >= 3
        print(subscription.stats.as_dict())


async def test_a_lost_delivery_is_backfilled_over_the_log_api(
    endpoints: Endpoints, stack: Stack, event_log: EventLog
) -> None:
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        events = [event_log.publish("news", n) for n in range(4)]
        for index in (0, 1, 3):  # the fan-out never delivers event 3 (index 2)
            await stack.deliver(events[index])
        assert await take(subscription, 4) == events
        assert subscription.stats.backfills == 1


@pytest.mark.parametrize(("limit", "reads"), [(100, 1), (2, 3)], ids=["one page", "pages of 2"])
async def test_without_a_log_api_a_lost_delivery_is_backfilled_over_the_socket(
    stack: Stack,
    event_log: EventLog,
    limit: int,
    reads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A deployment of the WebSocket transport alone: no polling API, no SSE service.
    alone = Endpoints(websocket_url=stack.gateway.url)
    assert alone.log_api_url is None
    read = event_log.read
    monkeypatch.setattr(event_log, "read", lambda channel, after, _: read(channel, after, limit))
    served: list[dict[str, Any]] = []

    def read_route(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        served.append(json.loads(event["body"]))
        return routes.read(event, context)

    monkeypatch.setitem(stack.gateway.routes, "read", read_route)
    async with open_transport("websocket", alone, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        events = [event_log.publish("news", n) for n in range(7)]
        for index in (0, 6):  # the fan-out never delivers events 2 to 6
            await stack.deliver(events[index])
        assert await take(subscription, 7) == events
    assert subscription.stats.backfills == reads
    assert [frame["after"] for frame in served] == [1, 3, 5][:reads]


async def test_a_backlog_overlapping_live_deliveries_comes_out_once(
    endpoints: Endpoints, stack: Stack, event_log: EventLog
) -> None:
    backlog = [event_log.publish("news", n) for n in range(3)]
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=0)
        for event in backlog:  # delivered live as well, as a racing fan-out does
            await stack.deliver(event)
        live_event = event_log.publish("news", "live")
        await stack.deliver(live_event)
        assert await take(subscription, 4) == [*backlog, live_event]
        await eventually(lambda: subscription.stats.duplicates >= 3, what="three duplicates")


async def test_replies_finishing_in_another_order_are_matched_by_channel_and_data(
    endpoints: Endpoints, replies_reversed: ReversedPublishes
) -> None:
    sent = ["a", 1, True, {"b": [1.5]}]  # 1 and True are equal in Python, not in JSON
    async with open_transport("websocket", endpoints, options=OPTIONS) as transport:
        with anyio.fail_after(SAFETY_TIMEOUT_SECONDS):
            answered = await asyncio.gather(
                *(transport.publish("news", data) for data in sent),
                transport.publish("other", "c"),
            )
    # None was answered before all five had arrived; then they ran, and replied, last first.
    assert replies_reversed.ran == [4, 3, 2, 1, 0]
    assert [encode_json(event.data) for event in answered] == [
        '"a"',
        "1",
        "true",
        '{"b":[1.5]}',
        '"c"',
    ]
    assert [event.channel for event in answered] == ["news"] * 4 + ["other"]
    assert sorted(seqs(list(answered[:4]))) == [1, 2, 3, 4]
    assert seqs([answered[4]]) == [1]
