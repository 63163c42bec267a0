"""What the WebSocket handlers log and emit: fan-out metrics, one line per route, never a
token or an event's body (the event log's own: ``tests/test_delivery_telemetry.py``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from eventlog import EventLog, metrics
from tests.auth_support import token
from tests.metrics_support import Emitted
from tests.test_delivery_telemetry import BODY_MARKER, extras
from tests.websocket.test_websocket_authorizer import authorizer_event
from tests.websocket.test_websocket_fanout import FlakyApi, StreamReader, connect
from tests.websocket.test_websocket_routes import message, ws, ws_event  # noqa: F401 (a fixture)
from websocket_api import authorizer, routes
from websocket_api.connections import Connections
from websocket_api.fanout import Fanout

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
