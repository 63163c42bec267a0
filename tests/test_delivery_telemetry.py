"""What each handler logs and emits: the fields an operator searches by, the delivery metrics,
and never a token or an event's body."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eventlog import EventLog, metrics
from eventlog.log import ReadResult
from polling.app import create_app
from polling.long_poll import wait_for_events
from sse_service.app import sse_metrics
from sse_service.hub import Hub
from tests.auth_support import ALL_ACCESS, bearer, token
from tests.metrics_support import Emitted
from tests.test_websocket_authorizer import authorizer_event
from tests.test_websocket_fanout import FlakyApi, StreamReader, connect
from tests.test_websocket_routes import message, ws, ws_event  # noqa: F401 (a fixture)
from websocket_api import authorizer, routes
from websocket_api.connections import Connections
from websocket_api.fanout import Fanout

BODY_MARKER = "body-that-must-not-be-logged-7c1e"


def extras(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, Any]]:
    return [vars(r) for r in caplog.records if r.name == logger]


# --- Publish -----------------------------------------------------------------------------------


def test_a_publish_emits_its_latency_and_the_contention_it_met(
    log: EventLog, emitted: Emitted
) -> None:
    log.publish("news", 1)
    log._fill("news", 2)  # a reader settled seq 2 as abandoned: the next publish must retake
    log.publish("news", {"note": BODY_MARKER})
    assert emitted.values(metrics.SEQS_RETAKEN, service=metrics.EVENTLOG) == [0, 1]
    assert emitted.values(metrics.HEAD_REBUILDS, service=metrics.EVENTLOG) == [0, 0]
    latencies = emitted.values(metrics.PUBLISH_LATENCY, service=metrics.EVENTLOG)
    assert len(latencies) == 2
    assert all(latency > 0 for latency in latencies)
    assert not any(BODY_MARKER in line for line in emitted.lines)


# --- WebSocket fan-out -------------------------------------------------------------------------


@pytest.fixture
def api(aws: None) -> FlakyApi:
    return FlakyApi()


@pytest.fixture
def fan(dynamodb: Any, connections_table: str, api: FlakyApi) -> Iterator[Fanout]:
    fan = Fanout(
        connections=Connections(table_name=connections_table, client=dynamodb),
        client=api,
        workers=4,
        sleep=lambda _seconds: None,
        clock=lambda: 1_800_000_000.0,
    )
    yield fan
    fan._executor.shutdown()


def test_a_fanout_batch_emits_posts_410s_throttles_duration_and_delivery_age(
    fan: Fanout, api: FlakyApi, log: EventLog, dynamodb: Any, events_table: str, emitted: Emitted
) -> None:
    stream = StreamReader(dynamodb, events_table)
    for connection_id in ("a=", "b=", "gone=", "slow="):
        connect(fan.connections, connection_id, "news")
    api.gone = {"gone="}
    api.throttled["slow="] = 2
    log._clock = lambda: 1_800_000_000.0 - 1.5  # published 1.5 s before the fan-out's clock
    log.publish("news", {"note": BODY_MARKER})
    log.publish("news", 2)
    emitted.lines.clear()  # the publishes' own lines

    assert fan.handle(stream.batch(), request_id="req-1") == {"batchItemFailures": []}

    [line] = emitted.lines
    record = json.loads(line)
    assert emitted.values(metrics.FANOUT_POSTS, service=metrics.WEBSOCKET) == [6]  # 3 x 2 events
    assert emitted.values(metrics.FANOUT_GONE) == [1]  # forgotten after the first event
    assert emitted.values(metrics.FANOUT_THROTTLED) == [2]
    assert emitted.values(metrics.DELIVERY_AGE) == [1500.0, 1500.0]
    [duration] = emitted.values(metrics.FANOUT_DURATION)
    assert duration > 0
    assert (record["outcome"], record["records"], record["request_id"]) == ("ok", 2, "req-1")
    assert record["transport"] == "websocket"
    assert BODY_MARKER not in line


def test_a_failed_fanout_record_is_logged_with_its_channel_and_seq(
    fan: Fanout,
    api: FlakyApi,
    log: EventLog,
    dynamodb: Any,
    events_table: str,
    emitted: Emitted,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = StreamReader(dynamodb, events_table)
    connect(fan.connections, "slow=", "news")
    api.throttled["slow="] = 100  # beyond every retry
    event = log.publish("news", {"note": BODY_MARKER})
    emitted.lines.clear()

    response = fan.handle(stream.batch())

    assert len(response["batchItemFailures"]) == 1
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    fields = vars(failure)
    assert (fields["channel"], fields["seq"], fields["outcome"]) == ("news", event.seq, "retry")
    assert BODY_MARKER not in caplog.text
    [line] = emitted.lines
    assert json.loads(line)["outcome"] == "retry"
    assert emitted.values(metrics.FANOUT_THROTTLED)[0] >= 1
    assert emitted.values(metrics.FANOUT_POSTS) == [0]


# --- WebSocket routes and the authorizer --------------------------------------------------------


@pytest.mark.usefixtures("ws")
def test_every_route_logs_one_line_with_its_fields_and_no_token_or_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="websocket_api.routes")
    secret = token()
    connect_event = ws_event("$connect")
    connect_event["queryStringParameters"] = {"token": secret}  # where a browser puts it
    routes.connect(connect_event)
    routes.subscribe(message("subscribe", channel="news"))
    routes.publish(message("publish", channel="news", data={"note": BODY_MARKER}))
    routes.publish(message("publish", channel="bad channel!", data=1))

    lines = extras(caplog, "websocket_api.routes")
    assert [(line["outcome"], line.get("channel"), line.get("seq")) for line in lines] == [
        ("ok", None, None),
        ("ok", "news", 0),  # subscribed at the head
        ("ok", "news", 1),  # the seq the publish got
        ("invalid_channel", None, None),
    ]
    assert all(line["transport"] == "websocket" for line in lines)
    assert all(
        line["connection_id"] == connect_event["requestContext"]["connectionId"] for line in lines
    )
    assert lines[0]["request_id"] == connect_event["requestContext"]["requestId"]
    assert secret not in caplog.text
    assert BODY_MARKER not in caplog.text


def test_a_refused_connect_is_logged_with_its_request_id_and_never_its_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="websocket_api.authorizer")
    forged = token()[:-4] + "AAAA"
    event = authorizer_event(forged)
    event["requestContext"]["requestId"] = "Lx9fYEEfIAMFkLQ="  # API Gateway sends one
    with pytest.raises(Exception, match="Unauthorized"):
        authorizer.handler(event)
    [line] = extras(caplog, "websocket_api.authorizer")
    assert (line["outcome"], line["transport"]) == ("unauthorized", "websocket")
    assert line["request_id"] == "Lx9fYEEfIAMFkLQ="
    assert line["connection_id"] == event["requestContext"]["connectionId"]
    assert forged not in caplog.text


# --- Polling -----------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_polling_request_logs_its_route_channel_seq_and_outcome(
    log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polling.app")
    secret = token()
    transport = httpx.ASGITransport(app=create_app(log=log))
    async with httpx.AsyncClient(transport=transport, base_url="http://polling.test") as client:
        published = await client.post(
            "/channels/news/events", params={"token": secret}, json={"data": BODY_MARKER}
        )
        assert published.status_code == 201
        read = await client.get(
            "/channels/news/events", params={"after": 1}, headers=bearer(ALL_ACCESS)
        )
        assert read.json()["events"] == []
        refused = await client.get("/channels/news/events", params={"token": "nope"})
        assert refused.status_code == 401
    lines = extras(caplog, "polling.app")
    assert [(line["outcome"], line["channel"], line.get("seq")) for line in lines] == [
        ("ok", "news", 1),
        ("empty", "news", 1),
        ("http_401", "news", None),
    ]
    assert {line["transport"] for line in lines} == {"polling"}
    assert next(r.getMessage() for r in caplog.records if r.name == "polling.app") == (
        "POST /channels/{channel}/events 201"
    )
    assert secret not in caplog.text
    assert BODY_MARKER not in caplog.text


@pytest.mark.anyio
async def test_a_long_poll_emits_its_wait_and_whether_it_came_back_empty(emitted: Emitted) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def nothing() -> ReadResult:
        return ReadResult(channel="news", events=[], next=0)

    await wait_for_events(read=nothing, wait=2, clock=lambda: now[0], sleep=sleep)
    await wait_for_events(read=nothing, wait=0, clock=lambda: now[0], sleep=sleep)  # no wait
    assert emitted.values(metrics.LONG_POLL_WAIT, service=metrics.POLLING) == [2000.0]
    assert emitted.values(metrics.LONG_POLL_EMPTY, service=metrics.POLLING) == [1]


# --- SSE ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_sse_report_counts_streams_readers_cuts_and_the_drain(log: EventLog) -> None:
    hub = Hub(
        log=log,
        queue_bytes=1,
        write_slice_bytes=1,
        reader_interval_seconds=1,
        drain_seconds=10,
        retry_milliseconds=1000,
        heartbeat_seconds=15,
    )
    first, _second = hub.admit("news"), hub.admit("news")
    assert sse_metrics(hub, slow_clients_cut=0) == {
        metrics.SSE_OPEN_STREAMS: 2,
        metrics.SSE_FEED_READERS: 0,
        metrics.SSE_SLOW_CLIENTS_CUT: 0,
        metrics.SSE_DRAINING: 0,
    }
    first.offer([(1, b"too big for one byte")])  # over its bound: cut
    hub.leave(first)
    assert hub.stats["closed_overflow"] == 1
    hub.begin_drain()
    values = sse_metrics(hub, slow_clients_cut=1)
    assert (values[metrics.SSE_OPEN_STREAMS], values[metrics.SSE_DRAINING]) == (1, 1)
    await asyncio.sleep(0)
