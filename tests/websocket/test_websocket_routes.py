"""The WebSocket route handlers on moto, driven by API Gateway-shaped events.

Frames the handlers post land in moto's @connections backend, which keeps each
connection's posted bytes; ``sent`` splits them back into frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from auth.claims import SCOPES, Scope, grant
from eventlog import EventLog, schema
from eventlog.config import (
    MAX_EVENT_BYTES,
    WEBSOCKET_MAX_CONNECTION_SECONDS,
    WEBSOCKET_MAX_MESSAGE_BYTES,
    Settings,
)
from tests.auth_support import authorizer_context
from websocket_api import frames as frames_module
from websocket_api import management, routes
from websocket_api.config import MANAGEMENT_ENDPOINT_ENV
from websocket_api.connections import (
    CONNECTIONS_TABLE,
    Connections,
    channel_pk,
    connection_pk,
)

DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
STAGE = "ws"
ALICE = "Lx9fXc3rIAMCJ9A="  # API Gateway connection ids look like this, "=" included
BOB = "Lx9fdeK_IAMCKcg="


def ws_event(
    route_key: str,
    *,
    connection_id: str = ALICE,
    body: str | None = None,
    connected_at_ms: int | None = None,
    authorizer: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway WebSocket proxy event as Lambda receives it.

    ``authorizer``: the ``$connect`` authorizer's context, as API Gateway passes it on
    every event of the connection (default: claims to do anything on any channel).
    """
    now_ms = int(time.time() * 1000)
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": "Lx9fYEEfIAMFkLQ=",
        "requestTime": "28/Nov/2026:08:47:00 +0000",
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": connected_at_ms or now_ms - 5_000,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "test"},
        "requestId": str(uuid.uuid4()),
        "domainName": DOMAIN,
        "connectionId": connection_id,
        "apiId": DOMAIN.split(".")[0],
        "authorizer": authorizer if authorizer is not None else authorizer_context(),
    }
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if event_type == "MESSAGE":
        context["messageId"] = "Lx9fZcQqIAMCJ9A="
        event["body"] = body
    elif event_type == "CONNECT":
        event["headers"] = {"Host": DOMAIN, "Sec-WebSocket-Version": "13"}
        event["multiValueHeaders"] = {"Host": [DOMAIN]}
    else:
        context["disconnectStatusCode"] = 1000
        context["disconnectReason"] = "Client-side close frame status code"
    return event


def message(
    action: str,
    *,
    connection_id: str = ALICE,
    authorizer: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = json.dumps({"action": action, **fields})
    return ws_event(action, connection_id=connection_id, body=body, authorizer=authorizer)


def sent(connection_id: str = ALICE) -> list[dict[str, Any]]:
    """Every frame posted to ``connection_id``, in order."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
    from moto.core.models import DEFAULT_ACCOUNT_ID

    backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    connection = backend.connections.get(quote(connection_id, safe=""))
    data = connection.data.decode() if connection else ""
    decoder, position, result = json.JSONDecoder(), 0, []
    while position < len(data):
        frame, position = decoder.raw_decode(data, position)
        result.append(frame)
    return result


def items(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    return list(dynamodb.scan(TableName=table)["Items"])


@pytest.fixture
def ws(
    dynamodb: Any, events_table: str, connections_table: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[routes.Services]:
    monkeypatch.delenv(MANAGEMENT_ENDPOINT_ENV, raising=False)
    services = routes.Services(
        log=EventLog(settings=Settings(events_table_name=events_table), client=dynamodb),
        connections=Connections(table_name=connections_table, client=dynamodb),
        management_client=lambda endpoint: management.sdk_client(endpoint, max_pool_connections=2),
    )
    routes.use_services(services)
    yield services
    routes.use_services(None)


# --- $connect / $disconnect -----------------------------------------------------------------


def test_connect_records_the_connection_until_api_gateway_closes_it(
    ws: routes.Services, dynamodb: Any
) -> None:
    connected_at_ms = int(time.time() * 1000)
    response = routes.connect(ws_event("$connect", connected_at_ms=connected_at_ms))
    assert response == {"statusCode": 200}
    [item] = items(dynamodb, "connections")
    assert item["pk"] == {"S": connection_pk(ALICE)}
    assert item["connection_id"] == {"S": ALICE}
    expires_at = int(item["expires_at"]["N"])
    assert expires_at == connected_at_ms // 1000 + WEBSOCKET_MAX_CONNECTION_SECONDS
    assert expires_at - time.time() <= 2 * 60 * 60
    assert sent() == []  # posting during $connect answers 410 on AWS


def test_disconnect_removes_the_connection_and_all_its_subscriptions(
    ws: routes.Services, dynamodb: Any
) -> None:
    for connection_id in (ALICE, BOB):
        routes.connect(ws_event("$connect", connection_id=connection_id))
        for channel in ("news", "sport", "weather"):
            routes.subscribe(message("subscribe", connection_id=connection_id, channel=channel))
    assert len(items(dynamodb, "connections")) == 8

    assert routes.disconnect(ws_event("$disconnect")) == {"statusCode": 200}

    left = items(dynamodb, "connections")
    assert {item["connection_id"]["S"] for item in left} == {BOB}
    assert len(left) == 4
    assert list(ws.connections.subscribers("news")) == [[BOB]]


def test_disconnect_of_an_unknown_connection_is_harmless(ws: routes.Services) -> None:
    assert routes.disconnect(ws_event("$disconnect", connection_id="never-seen=")) == {
        "statusCode": 200
    }


# --- subscribe --------------------------------------------------------------------------------


def test_subscribe_without_cursor_is_live_only_from_the_head(
    ws: routes.Services, dynamodb: Any
) -> None:
    for n in range(3):
        ws.log.publish("news", n)
    assert routes.subscribe(message("subscribe", channel="news")) == {"statusCode": 200}
    assert sent() == [{"type": "subscribed", "channel": "news", "head": 3}]
    assert list(ws.connections.subscribers("news")) == [[ALICE]]
    [subscription] = [i for i in items(dynamodb, "connections") if i["pk"]["S"].startswith("ch")]
    assert subscription["pk"] == {"S": channel_pk("news")}
    assert int(subscription["expires_at"]["N"]) <= time.time() + WEBSOCKET_MAX_CONNECTION_SECONDS


def test_a_subscription_remembers_when_its_token_expires(
    ws: routes.Services, dynamodb: Any
) -> None:
    expires_at = int(time.time()) + 600
    routes.subscribe(
        message("subscribe", channel="news", authorizer=authorizer_context(expires_at=expires_at))
    )
    [item] = [i for i in items(dynamodb, "connections") if i["pk"]["S"] == channel_pk("news")]
    assert item["token_expires_at"] == {"N": str(expires_at)}
    [[receiver]] = ws.connections.receivers("news")
    assert receiver.token_expires_at == expires_at


def test_subscribe_to_an_empty_channel_reports_head_zero(ws: routes.Services) -> None:
    routes.subscribe(message("subscribe", channel="empty", after=0))
    assert sent() == [{"type": "subscribed", "channel": "empty", "head": 0}]


def test_every_reply_echoes_the_request_id_it_answers(ws: routes.Services) -> None:
    routes.subscribe(message("subscribe", channel="news", id="s-1"))
    routes.publish(message("publish", channel="news", data={"n": 1}, id="p-2"))
    routes.publish(message("publish", channel="bad channel", data=1, id="p-3"))
    routes.ping(message("ping", id="ping-4"))
    routes.unsubscribe(message("unsubscribe", channel="news", id="u-5"))
    routes.default(message("nonsense", id="x-6"))
    replies = [frame for frame in sent() if frame["type"] != "event"]
    assert [(frame["type"], frame.get("id")) for frame in replies] == [
        ("subscribed", "s-1"),
        ("published", "p-2"),
        ("error", "p-3"),
        ("pong", "ping-4"),
        ("unsubscribed", "u-5"),
        ("error", "x-6"),
    ]
    assert replies[1]["event"]["data"] == {"n": 1}


def test_a_frame_without_an_id_gets_replies_without_one(ws: routes.Services) -> None:
    routes.subscribe(message("subscribe", channel="news"))
    routes.publish(message("publish", channel="news", data=1))
    assert all("id" not in frame for frame in sent())


@pytest.mark.parametrize("bad", ["", "x" * 65, 7, ["a"]], ids=["empty", "long", "number", "list"])
def test_a_malformed_id_is_refused_unechoed_and_nothing_is_written(
    ws: routes.Services, bad: Any
) -> None:
    routes.publish(message("publish", channel="news", data=1, id=bad))
    [reply] = sent()
    assert (reply["type"], reply["code"]) == ("error", "invalid_frame")
    assert '"id"' in reply["message"]
    assert "id" not in reply
    assert ws.log.head("news") == 0


def test_subscribe_with_cursor_sends_subscribed_then_the_whole_backlog_in_order(
    ws: routes.Services, cheap_transaction_rollback: None
) -> None:
    published = [ws.log.publish("news", {"n": n}) for n in range(250)]  # three pages of 100
    ws.log.publish("other", "not this channel")

    routes.subscribe(message("subscribe", channel="news", after=10))

    frames = sent()
    assert frames[0] == {"type": "subscribed", "channel": "news", "head": 250}
    assert [f["type"] for f in frames[1:]] == ["event"] * 240
    assert [f["event"] for f in frames[1:]] == [e.to_dict() for e in published[10:]]


def test_subscribe_with_cursor_at_the_head_sends_no_backlog(ws: routes.Services) -> None:
    for n in range(5):
        ws.log.publish("news", n)
    routes.subscribe(message("subscribe", channel="news", after=5))
    assert sent() == [{"type": "subscribed", "channel": "news", "head": 5}]


def publish_expired_events(dynamodb: Any) -> None:
    """Seqs 1 to 3 of "news", published three days ago with one day of retention: expired."""
    old_log = EventLog(
        settings=Settings(events_table_name="events", retention_seconds=86_400),
        client=dynamodb,
        clock=lambda: time.time() - 3 * 86_400,
    )
    for n in range(3):
        old_log.publish("news", f"old {n}")


def test_subscribe_behind_the_retained_history_sends_reset_first(
    ws: routes.Services, dynamodb: Any
) -> None:
    publish_expired_events(dynamodb)
    fresh = [ws.log.publish("news", f"new {n}") for n in range(2)]

    routes.subscribe(message("subscribe", channel="news", after=1))

    assert sent() == [
        {"type": "subscribed", "channel": "news", "head": 5},
        {"type": "reset", "channel": "news", "oldest": 4},
        *({"type": "event", "event": e.to_dict()} for e in fresh),
    ]


def test_subscribe_with_a_cursor_from_the_future_resets_to_the_start(ws: routes.Services) -> None:
    events = [ws.log.publish("news", n) for n in range(2)]
    routes.subscribe(message("subscribe", channel="news", after=99))
    assert sent() == [
        {"type": "subscribed", "channel": "news", "head": 2},
        {"type": "reset", "channel": "news", "oldest": 1},
        *({"type": "event", "event": e.to_dict()} for e in events),
    ]


# --- read: the log's page read, over the socket ------------------------------------------------


def test_read_answers_one_page_after_the_cursor_and_writes_nothing(
    ws: routes.Services, dynamodb: Any
) -> None:
    published = [ws.log.publish("news", {"n": n}) for n in range(5)]
    before = items(dynamodb, "connections") + items(dynamodb, "events")
    routes.read(message("read", channel="news", after=1, limit=2, id="r1"))
    assert sent() == [
        {
            "type": "page",
            "channel": "news",
            "events": [e.to_dict() for e in published[1:3]],
            "next": 3,
            "reset": False,
            "oldest": None,
            "id": "r1",
        }
    ]
    assert items(dynamodb, "connections") + items(dynamodb, "events") == before  # no subscription


def test_read_behind_the_retained_history_says_reset(ws: routes.Services, dynamodb: Any) -> None:
    publish_expired_events(dynamodb)
    fresh = ws.log.publish("news", "new")
    routes.read(message("read", channel="news", after=1))
    [page] = sent()
    assert (page["reset"], page["oldest"], page["next"]) == (True, 4, 4)
    assert page["events"] == [fresh.to_dict()]


def test_a_page_too_big_for_one_message_ends_early_and_says_where(ws: routes.Services) -> None:
    # Five events of nearly 32 KB: four fit in API Gateway's 128 KB message.
    published = [ws.log.publish("news", "x" * 32_600) for _ in range(5)]
    routes.read(message("read", channel="news", after=0, id="big"))
    [page] = sent()
    assert [e["seq"] for e in page["events"]] == [1, 2, 3, 4]
    assert page["next"] == 4  # the fifth comes with the next read
    assert page["id"] == "big"
    encoded = frames_module.page(ws.log.read("news", 0, 100), "big")
    assert len(encoded.encode()) <= WEBSOCKET_MAX_MESSAGE_BYTES
    assert json.loads(encoded) == page
    assert published[4].seq == 5


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"channel": "news"}, "invalid_cursor"),
        ({"channel": "news", "after": -1}, "invalid_cursor"),
        ({"channel": "news", "after": 0, "limit": 0}, "invalid_limit"),
        ({"channel": "news", "after": 0, "limit": 101}, "invalid_limit"),
        ({"after": 0}, "invalid_channel"),
    ],
    ids=["no cursor", "negative cursor", "limit 0", "limit above the page", "no channel"],
)
def test_a_bad_read_is_an_error_frame(
    ws: routes.Services, fields: dict[str, Any], code: str
) -> None:
    routes.read(message("read", id="bad", **fields))
    [frame] = sent()
    assert (frame["type"], frame["code"], frame["id"]) == ("error", code, "bad")


def test_read_needs_the_subscribe_scope(ws: routes.Services) -> None:
    publisher_only = authorizer_context(grant("news", "publish"))
    routes.read(message("read", authorizer=publisher_only, channel="news", after=0))
    [frame] = sent()
    assert (frame["type"], frame["code"]) == ("error", "forbidden")


def test_subscribe_records_the_subscription_before_reading_the_head(
    ws: routes.Services, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[list[str]]] = []
    original_head = ws.log.head

    def head(channel: str) -> int:
        seen.append(list(ws.connections.subscribers(channel)))
        return original_head(channel)

    monkeypatch.setattr(ws.log, "head", head)
    routes.subscribe(message("subscribe", channel="news"))
    assert seen == [[[ALICE]]]


def test_subscribe_again_replaces_the_subscription_and_resends(ws: routes.Services) -> None:
    ws.log.publish("news", 1)
    routes.subscribe(message("subscribe", channel="news"))
    routes.subscribe(message("subscribe", channel="news", after=0))
    assert [f["type"] for f in sent()] == ["subscribed", "subscribed", "event"]
    assert list(ws.connections.subscribers("news")) == [[ALICE]]


def test_a_client_that_left_during_its_backlog_stops_the_backlog(
    ws: routes.Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        ws.log.publish("news", n)
    posted: list[str] = []

    class LeavesAfterTwoFrames:
        def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
            posted.append(Data.decode())
            if len(posted) >= 2:
                raise _client_error("GoneException", 410)

    routes.use_services(
        routes.Services(
            log=ws.log,
            connections=ws.connections,
            management_client=lambda endpoint: LeavesAfterTwoFrames(),
        )
    )
    assert routes.subscribe(message("subscribe", channel="news", after=0)) == {"statusCode": 200}
    assert len(posted) == 2  # subscribed, then event 1 answered 410: nothing more was sent


# --- unsubscribe, publish, ping ---------------------------------------------------------------


def test_unsubscribe_removes_only_that_subscription_and_is_idempotent(
    ws: routes.Services,
) -> None:
    routes.subscribe(message("subscribe", channel="news"))
    routes.subscribe(message("subscribe", channel="sport"))
    assert routes.unsubscribe(message("unsubscribe", channel="news")) == {"statusCode": 200}
    routes.unsubscribe(message("unsubscribe", channel="news"))
    assert list(ws.connections.subscribers("news")) == []
    assert list(ws.connections.subscribers("sport")) == [[ALICE]]
    assert sent()[-2:] == [{"type": "unsubscribed", "channel": "news"}] * 2


def test_publish_appends_to_the_log_and_acknowledges_with_the_event(ws: routes.Services) -> None:
    assert routes.publish(message("publish", channel="news", data={"x": [1, "ü"]})) == {
        "statusCode": 200
    }
    assert routes.publish(message("publish", channel="news", data=None)) == {"statusCode": 200}
    [first, second] = sent()
    assert first["type"] == "published"
    assert first["event"]["channel"] == "news"
    assert first["event"]["seq"] == 1
    assert first["event"]["data"] == {"x": [1, "ü"]}
    assert second["event"]["seq"] == 2
    assert second["event"]["data"] is None
    result = ws.log.read("news", 0)
    assert [e.to_dict() for e in result.events] == [first["event"], second["event"]]


def test_ping_answers_pong(ws: routes.Services) -> None:
    assert routes.ping(message("ping")) == {"statusCode": 200}
    assert sent() == [{"type": "pong"}]


# --- auth: every subscribe and publish is checked against the connection's claims -------------

FRAMES: dict[Scope, dict[str, Any]] = {
    "subscribe": {"channel": "news", "after": 0},
    "publish": {"channel": "news", "data": 1},
}

REFUSED_CONTEXTS: dict[str, tuple[dict[str, str], str]] = {
    "no authorizer context": ({}, "unauthorized"),
    "a malformed context": ({"channels": "[{", "exp": "1"}, "unauthorized"),
    "expired since connect": (
        authorizer_context(expires_at=int(time.time()) - 1),
        "unauthorized",
    ),
    "wrong channel": (authorizer_context(grant("sports*", "subscribe", "publish")), "forbidden"),
}


@pytest.mark.parametrize("action", SCOPES)
@pytest.mark.parametrize("case", [*REFUSED_CONTEXTS, "wrong scope"])
def test_refusals_are_error_frames_and_write_nothing(
    ws: routes.Services, dynamodb: Any, action: Scope, case: str
) -> None:
    other: Scope = "publish" if action == "subscribe" else "subscribe"
    context, code = REFUSED_CONTEXTS.get(
        case, (authorizer_context(grant("news", other)), "forbidden")
    )
    before = items(dynamodb, "connections") + items(dynamodb, "events")
    handler = routes.ROUTES[action]
    assert handler(message(action, authorizer=context, **FRAMES[action]), None) == {
        "statusCode": 200
    }
    [frame] = sent()
    assert (frame["type"], frame["code"]) == ("error", code)
    assert items(dynamodb, "connections") + items(dynamodb, "events") == before


@pytest.mark.parametrize("action", SCOPES)
@pytest.mark.parametrize("pattern", ["news", "ne*", "*"])
def test_grants(ws: routes.Services, action: Scope, pattern: str) -> None:
    context = authorizer_context(grant(pattern, action))
    routes.ROUTES[action](message(action, authorizer=context, **FRAMES[action]), None)
    assert sent()[0]["type"] == {"subscribe": "subscribed", "publish": "published"}[action]


def test_unsubscribe_and_ping_need_no_scope(ws: routes.Services) -> None:
    nothing = authorizer_context(grant("elsewhere", "subscribe"))
    routes.unsubscribe(message("unsubscribe", authorizer=nothing, channel="news"))
    routes.ping(message("ping", authorizer=nothing))
    assert sent() == [{"type": "unsubscribed", "channel": "news"}, {"type": "pong"}]


def test_with_auth_off_no_claims_are_needed(
    ws: routes.Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AUTH_MODE", "off")
    from_env = routes.Services.from_env()
    assert not from_env.claims_required
    assert "AUTH IS OFF" in caplog.text
    routes.use_services(dataclasses.replace(ws, claims_required=False))
    routes.publish(message("publish", authorizer={}, channel="news", data=1))
    assert sent()[0]["type"] == "published"


# --- bad input: an error frame, a 200, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("route", "body", "code"),
    [
        ("$default", "not json", "bad_json"),
        ("$default", "", "bad_json"),
        ("$default", None, "bad_json"),
        ("$default", "[1, 2]", "invalid_frame"),
        ("$default", "{}", "unknown_action"),
        ("$default", '{"action": "dance"}', "unknown_action"),
        ("subscribe", '{"action": "subscribe"}', "invalid_channel"),
        ("subscribe", '{"action": "subscribe", "channel": "no spaces"}', "invalid_channel"),
        ("subscribe", '{"action": "subscribe", "channel": null}', "invalid_channel"),
        ("subscribe", '{"action": "subscribe", "channel": "news", "after": -1}', "invalid_cursor"),
        ("subscribe", '{"action": "subscribe", "channel": "n", "after": "x"}', "invalid_cursor"),
        ("unsubscribe", '{"action": "unsubscribe", "channel": "a/b"}', "invalid_channel"),
        ("publish", '{"action": "publish", "channel": "a b", "data": 1}', "invalid_channel"),
        ("publish", '{"action": "publish", "data": 1}', "invalid_channel"),
        ("publish", '{"action": "publish", "channel": "news"}', "invalid_data"),
        ("publish", '{"action": "publish", "channel": "news", "data": NaN}', "invalid_data"),
        (
            "publish",
            json.dumps({"action": "publish", "channel": "news", "data": "x" * MAX_EVENT_BYTES}),
            "event_too_large",
        ),
        # Nested deeper than the decoder recurses, yet inside one 32 KB frame.
        ("$default", "[" * 30_000, "bad_json"),
        ("subscribe", '{"action": "subscribe", "x": ' + "[" * 30_000, "bad_json"),
        ("publish", '{"action": "publish", "channel": "n", "data": ' + "[" * 30_000, "bad_json"),
        # More digits than a DynamoDB number holds.
        (
            "subscribe",
            f'{{"action": "subscribe", "channel": "n", "after": {10**40}}}',
            "invalid_cursor",
        ),
        (
            "subscribe",
            f'{{"action": "subscribe", "channel": "n", "after": {10**38}}}',
            "invalid_cursor",
        ),
        # Dot segments: no browser can put them in a URL path.
        ("subscribe", '{"action": "subscribe", "channel": ".."}', "invalid_channel"),
        ("publish", '{"action": "publish", "channel": ".", "data": 1}', "invalid_channel"),
        # A lone surrogate parses, but has no UTF-8 encoding to deliver.
        ("publish", '{"action": "publish", "channel": "n", "data": "\\ud800"}', "invalid_data"),
    ],
)
def test_bad_input_gets_an_error_frame_and_writes_nothing(
    ws: routes.Services, dynamodb: Any, route: str, body: str | None, code: str
) -> None:
    response = routes.ROUTES[route](ws_event(route, body=body), None)
    assert response == {"statusCode": 200}  # the connection stays open
    [frame] = sent()
    assert frame["type"] == "error"
    assert frame["code"] == code
    assert isinstance(frame["message"], str)
    assert frame["message"]
    assert items(dynamodb, "events") == []
    assert items(dynamodb, "connections") == []


def test_unknown_action_error_names_the_valid_actions(ws: routes.Services) -> None:
    routes.default(ws_event("$default", body='{"action": "dance"}'))
    [frame] = sent()
    for action in ("subscribe", "unsubscribe", "publish", "read", "ping"):
        assert action in frame["message"]


def test_a_misrouted_frame_is_refused_rather_than_served_by_the_wrong_function(
    ws: routes.Services, dynamodb: Any
) -> None:
    routes.ping(ws_event("ping", body='{"action": "publish", "channel": "news", "data": 1}'))
    assert [f["code"] for f in sent()] == ["unknown_action"]
    assert items(dynamodb, "events") == []


def test_a_server_fault_sends_internal_error_and_fails_the_invocation(
    ws: routes.Services,
) -> None:
    class BrokenConnections(Connections):
        def subscribe(self, connection_id: str, channel: str, **_: Any) -> None:
            raise _client_error("InternalServerError", 500)

    routes.use_services(
        dataclasses.replace(ws, connections=BrokenConnections(table_name="connections"))
    )
    with pytest.raises(Exception, match="InternalServerError"):
        routes.subscribe(message("subscribe", channel="news"))
    assert [f["code"] for f in sent()] == ["internal_error"]


def test_a_throttled_request_is_a_throttled_frame_not_a_fault(
    ws: routes.Services, dynamodb: Any
) -> None:
    class ThrottledLog(EventLog):
        def publish(self, channel: str, data: Any) -> Any:
            raise _client_error("ProvisionedThroughputExceededException", 400)

    routes.use_services(dataclasses.replace(ws, log=ThrottledLog(client=dynamodb)))
    response = routes.publish(message("publish", channel="news", data=1))
    assert response == {"statusCode": 200}, "the client's to retry; the function did not fail"
    assert [f["code"] for f in sent()] == ["throttled"]
    assert items(dynamodb, "events") == []


# --- where frames go --------------------------------------------------------------------------


def test_the_management_endpoint_comes_from_the_event_unless_overridden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MANAGEMENT_ENDPOINT_ENV, raising=False)
    request = routes.Request.from_event(message("ping"))
    assert request.endpoint == f"https://{DOMAIN}/{STAGE}"
    monkeypatch.setenv(MANAGEMENT_ENDPOINT_ENV, "http://127.0.0.1:4510")
    assert routes.Request.from_event(message("ping")).endpoint == "http://127.0.0.1:4510"


def test_the_handlers_load_without_the_aws_sdk() -> None:
    code = (
        "import sys, websocket_api.routes, websocket_api.fanout; "
        "print(sorted(m for m in ('boto3', 'botocore', 'urllib3', 'jwt') if m in sys.modules))"
    )
    functions = Path(routes.__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(functions)},
    )
    assert result.stdout.strip() == "[]"


def test_connections_table_spec_has_ttl_and_the_connection_index() -> None:
    kwargs = CONNECTIONS_TABLE.create_table_kwargs("t")
    assert CONNECTIONS_TABLE.ttl_attribute == "expires_at"
    [index] = kwargs["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_connection"
    assert index["KeySchema"][0] == {"AttributeName": "connection_id", "KeyType": "HASH"}
    assert schema.EVENTS_TABLE.stream_new_images  # the fan-out's source


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )
    return error
