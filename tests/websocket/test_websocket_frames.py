"""Client and server frames of the WebSocket contract: pure, no AWS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventlog.errors import EventLogError
from eventlog.events import Event
from websocket_api import frames
from websocket_api.frames import ACTIONS, Ping, Publish, Subscribe, Unsubscribe


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"action":"subscribe","channel":"news"}', Subscribe(channel="news", after=None)),
        ('{"action":"subscribe","channel":"news","after":null}', Subscribe("news", None)),
        ('{"action":"subscribe","channel":"news","after":0}', Subscribe("news", 0)),
        ('{"action":"subscribe","channel":"a.b-c_D9","after":"17"}', Subscribe("a.b-c_D9", 17)),
        ('{"action":"unsubscribe","channel":"news"}', Unsubscribe(channel="news")),
        ('{"action":"publish","channel":"news","data":{"x":[1]}}', Publish("news", {"x": [1]})),
        ('{"action":"publish","channel":"news","data":null}', Publish("news", None)),
        ('{"action":"ping"}', Ping()),
        ('{"action":"ping","extra":"ignored"}', Ping()),
    ],
)
def test_valid_frames_parse(body: str, expected: Any) -> None:
    assert frames.parse_frame(body) == expected
    assert frames.parse_frame(body.encode()) == expected


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "bad_json"),
        ("", "bad_json"),
        ("not json", "bad_json"),
        ('{"action": "subscribe",', "bad_json"),
        (b"\xff\xfe", "bad_json"),
        ("[1, 2]", "invalid_frame"),
        ('"subscribe"', "invalid_frame"),
        ("{}", "unknown_action"),
        ('{"action":"dance"}', "unknown_action"),
        ('{"action":"Subscribe","channel":"news"}', "unknown_action"),
        ('{"action":7}', "unknown_action"),
        ('{"action":"subscribe"}', "invalid_channel"),
        ('{"action":"subscribe","channel":""}', "invalid_channel"),
        ('{"action":"subscribe","channel":"has space"}', "invalid_channel"),
        ('{"action":"subscribe","channel":"' + "x" * 65 + '"}', "invalid_channel"),
        ('{"action":"subscribe","channel":12}', "invalid_channel"),
        ('{"action":"subscribe","channel":"news","after":-1}', "invalid_cursor"),
        ('{"action":"subscribe","channel":"news","after":"abc"}', "invalid_cursor"),
        ('{"action":"subscribe","channel":"news","after":true}', "invalid_cursor"),
        ('{"action":"subscribe","channel":"news","after":1.5}', "invalid_cursor"),
        ('{"action":"unsubscribe"}', "invalid_channel"),
        ('{"action":"unsubscribe","channel":"a/b"}', "invalid_channel"),
        ('{"action":"publish","channel":"news"}', "invalid_data"),
        ('{"action":"publish","channel":"a#b","data":1}', "invalid_channel"),
    ],
)
def test_bad_frames_are_rejected_with_a_code(body: Any, code: str) -> None:
    with pytest.raises(EventLogError) as caught:
        frames.parse_frame(body)
    assert caught.value.code == code
    assert caught.value.message


def test_unknown_action_names_the_valid_ones() -> None:
    with pytest.raises(EventLogError) as caught:
        frames.parse_frame('{"action":"dance"}')
    for action in ACTIONS:
        assert action in caught.value.message


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action":"subscribe","channel":"x"}', "subscribe"),
        ('{"action":"subscribe"}', "subscribe"),  # API Gateway routes on action alone
        ('{"action":"ping"}', "ping"),
        ('{"action":"dance"}', "$default"),
        ('{"action":["ping"]}', "$default"),
        ("not json", "$default"),
        ("[]", "$default"),
        (None, "$default"),
    ],
)
def test_route_key_mimics_api_gateway_route_selection(body: str | None, route: str) -> None:
    assert frames.route_key(body) == route


def test_server_frames_are_json_objects_tagged_by_type() -> None:
    event = Event(channel="news", seq=3, data={"ü": [1, None]}, time="2026-11-28T08:47:00.123Z")
    assert json.loads(frames.subscribed("news", 7)) == {
        "type": "subscribed",
        "channel": "news",
        "head": 7,
    }
    assert json.loads(frames.event(event.encode())) == {"type": "event", "event": event.to_dict()}
    assert json.loads(frames.published(event)) == {"type": "published", "event": event.to_dict()}
    assert json.loads(frames.reset("news", 5)) == {"type": "reset", "channel": "news", "oldest": 5}
    assert json.loads(frames.unsubscribed("news")) == {"type": "unsubscribed", "channel": "news"}
    assert json.loads(frames.pong()) == {"type": "pong"}
    assert json.loads(frames.error("bad_json", "nope")) == {
        "type": "error",
        "code": "bad_json",
        "message": "nope",
    }


def test_event_frame_embeds_the_stored_bytes_unchanged() -> None:
    encoded = '{"channel":"c","seq":1,"data":"ü","time":"2026-11-28T08:47:00.123Z"}'
    assert frames.event(encoded) == '{"type":"event","event":' + encoded + "}"


def test_replies_echo_a_request_id_and_leave_it_out_without_one() -> None:
    event = Event(channel="c", seq=1, data={"x": "\u00e9"}, time="2026-01-01T00:00:00.000Z")
    with_ids = [
        frames.subscribed("c", 3, "r1"),
        frames.unsubscribed("c", "r1"),
        frames.published(event, "r1"),
        frames.pong("r1"),
        frames.error("forbidden", "no", "r1"),
    ]
    assert [json.loads(frame)["id"] for frame in with_ids] == ["r1"] * 5
    assert json.loads(frames.published(event, 'a"b'))["id"] == 'a"b'  # encoded, not pasted
    without = [frames.subscribed("c", 3), frames.published(event), frames.error("x", "y")]
    assert all("id" not in json.loads(frame) for frame in without)


def test_request_id_reads_a_valid_id_and_refuses_a_malformed_one() -> None:
    assert frames.request_id({"action": "ping"}) is None
    assert frames.request_id({"id": "x" * frames.REQUEST_ID_MAX_LENGTH}) == "x" * 64
    for bad in ("", "x" * 65, 1, {"a": 1}):
        with pytest.raises(frames.FrameError) as refused:
            frames.request_id({"id": bad})
        assert refused.value.code == "invalid_frame"
