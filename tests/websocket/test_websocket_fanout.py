"""The fan-out on moto: stream records in, one post per subscriber out.

moto's @connections API accepts any id and never answers 410, so stale
connections, throttling and failures are injected by ``FlakyApi``, which wraps
the real (moto) client and raises botocore's own errors for chosen ids.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from eventlog import EventLog
from eventlog.config import Settings
from tests.auth_support import authorizer_context
from websocket_api import fanout, frames, management, routes
from websocket_api.config import (
    FANOUT_DEADLINE_MARGIN_SECONDS,
    MANAGEMENT_ENDPOINT_ENV,
    POST_BACKOFF_CAP_SECONDS,
)
from websocket_api.connections import Connections
from websocket_api.fanout import Deadline, DeliveryFailed, Fanout

ENDPOINT = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/ws"


def client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )
    return error


class FlakyApi:
    """The moto @connections client, with chosen connections gone, throttled or refusing."""

    def __init__(self) -> None:
        self.real = management.sdk_client(ENDPOINT, max_pool_connections=16)
        self.gone: set[str] = set()
        self.refusing: set[str] = set()
        self.throttled: Counter[str] = Counter()  # id -> how many more posts to throttle
        self.failing: Counter[str] = Counter()  # id -> how many more posts answer 500
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> Any:
        with self._lock:
            self.calls[ConnectionId] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.001)  # let the pool's threads overlap, as network waits do
            if ConnectionId in self.gone:
                raise client_error("GoneException", 410)
            if ConnectionId in self.refusing:
                raise client_error("ForbiddenException", 403)
            with self._lock:
                throttle = self.throttled[ConnectionId] > 0
                if throttle:
                    self.throttled[ConnectionId] -= 1
                fail = not throttle and self.failing[ConnectionId] > 0
                if fail:
                    self.failing[ConnectionId] -= 1
            if throttle:
                raise client_error("LimitExceededException", 429)
            if fail:
                raise client_error("InternalServerErrorException", 500)
            return self.real.post_to_connection(ConnectionId=ConnectionId, Data=Data)
        finally:
            with self._lock:
                self.in_flight -= 1


def received(connection_id: str) -> list[dict[str, Any]]:
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


class StreamReader:
    """Reads the events table's stream as the Lambda event source mapping would deliver it."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        import boto3

        self.arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.streams = boto3.client("dynamodbstreams")
        [shard] = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def batch(self) -> list[dict[str, Any]]:
        """Every record written since the last call, with the mapping's filter applied."""
        return [
            record
            for record in self.unfiltered()
            if record["eventName"] == "INSERT" and "event" in record["dynamodb"]["NewImage"]
        ]

    def unfiltered(self) -> list[dict[str, Any]]:
        response = self.streams.get_records(ShardIterator=self.iterator)
        self.iterator = response["NextShardIterator"]
        return [self._as_lambda_sees_it(record) for record in response["Records"]]

    def _as_lambda_sees_it(self, record: dict[str, Any]) -> dict[str, Any]:
        # GetRecords returns a datetime where a Lambda event has epoch seconds.
        created = record["dynamodb"]["ApproximateCreationDateTime"]
        dynamodb = {**record["dynamodb"], "ApproximateCreationDateTime": created.timestamp()}
        return {**record, "dynamodb": dynamodb, "eventSourceARN": self.arn}


@pytest.fixture
def api(aws: None) -> FlakyApi:
    return FlakyApi()


@pytest.fixture
def connections(dynamodb: Any, connections_table: str) -> Connections:
    return Connections(table_name=connections_table, client=dynamodb)


@pytest.fixture
def log(dynamodb: Any, events_table: str) -> EventLog:
    return EventLog(settings=Settings(events_table_name=events_table), client=dynamodb)


@pytest.fixture
def stream(dynamodb: Any, events_table: str) -> StreamReader:
    return StreamReader(dynamodb, events_table)


@pytest.fixture
def fan(connections: Connections, api: FlakyApi) -> Iterator[Fanout]:
    sleeps: list[float] = []
    fan = Fanout(connections=connections, client=api, workers=8, sleep=sleeps.append)
    fan.sleeps = sleeps  # type: ignore[attr-defined]
    yield fan
    fan._executor.shutdown()


def connect(connections: Connections, connection_id: str, *channels: str) -> None:
    connected_at_ms = int(time.time() * 1000)
    connections.connect(connection_id, connected_at_ms=connected_at_ms)
    for channel in channels:
        connections.subscribe(connection_id, channel, connected_at_ms=connected_at_ms)


def all_items(dynamodb: Any) -> list[dict[str, Any]]:
    return list(dynamodb.scan(TableName="connections")["Items"])


# --- delivery -------------------------------------------------------------------------------


def test_every_live_subscriber_receives_and_every_stale_one_is_deleted(
    fan: Fanout,
    api: FlakyApi,
    connections: Connections,
    log: EventLog,
    stream: StreamReader,
    dynamodb: Any,
) -> None:
    ids = [f"conn{n:03d}=" for n in range(120)]
    stale = set(ids[::4])  # 30 clients that left without a $disconnect
    for connection_id in ids:
        connect(connections, connection_id, "news", "sport")
    connect(connections, "elsewhere=", "sport")
    api.gone = stale
    event = log.publish("news", {"headline": "hi"})

    assert fan.handle(stream.batch()) == {"batchItemFailures": []}

    for connection_id in ids:
        expected = [] if connection_id in stale else [{"type": "event", "event": event.to_dict()}]
        assert received(connection_id) == expected
        assert api.calls[connection_id] == 1  # one pass, no retries of a 410
    assert received("elsewhere=") == []
    # The stale connections are gone with every item they had, also on other channels.
    left = {item["connection_id"]["S"] for item in all_items(dynamodb)}
    assert left == (set(ids) - stale) | {"elsewhere="}
    [sport] = list(connections.subscribers("sport"))
    assert set(sport) == (set(ids) - stale) | {"elsewhere="}
    assert 1 < api.most_in_flight <= 8  # concurrent, and bounded by the pool


def test_a_large_channel_is_read_page_by_page(
    fan: Fanout, connections: Connections, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"c{n}" for n in range(30)]
    for connection_id in ids:
        connect(connections, connection_id, "news")
    pages: list[int] = []
    query = dynamodb.query

    def small_pages(**kwargs: Any) -> Any:
        page = query(**{**kwargs, "Limit": 7})
        pages.append(len(page["Items"]))
        return page

    monkeypatch.setattr(connections, "_client", type("C", (), {"query": staticmethod(small_pages)}))
    delivery = fan.deliver("news", frames.pong())
    assert delivery.sent == 30
    assert pages == [7, 7, 7, 7, 2]
    assert all(received(c) == [{"type": "pong"}] for c in ids)


def test_expired_subscriptions_are_skipped_before_ttl_deletes_them(
    fan: Fanout, connections: Connections, api: FlakyApi
) -> None:
    three_hours_ago_ms = int((time.time() - 3 * 3600) * 1000)
    connections.subscribe("old=", "news", connected_at_ms=three_hours_ago_ms)
    connect(connections, "new=", "news")
    assert fan.deliver("news", frames.pong()).sent == 1
    assert api.calls == Counter({"new=": 1})


def test_events_reach_each_subscriber_in_seq_order(
    fan: Fanout, connections: Connections, log: EventLog, stream: StreamReader
) -> None:
    connect(connections, "a=", "news")
    connect(connections, "b=", "news", "sport")
    for n in range(12):
        log.publish("news" if n % 3 else "sport", n)
    assert fan.handle(stream.batch()) == {"batchItemFailures": []}
    news_a = [f["event"]["seq"] for f in received("a=")]
    news_b = [f["event"]["seq"] for f in received("b=") if f["event"]["channel"] == "news"]
    sport_b = [f["event"]["seq"] for f in received("b=") if f["event"]["channel"] == "sport"]
    assert news_a == news_b == list(range(1, 9))
    assert sport_b == [1, 2, 3, 4]


def test_head_items_tombstones_and_other_changes_in_the_stream_are_ignored(
    fan: Fanout, api: FlakyApi, connections: Connections, log: EventLog, stream: StreamReader
) -> None:
    connect(connections, "a=", "news")
    log.publish("news", 1)
    log.publish("news", 2)
    log._fill("news", 3)  # a reader fills a seq whose publisher died: a tombstone
    records = stream.unfiltered()
    assert any("event" not in r["dynamodb"]["NewImage"] for r in records)  # head item records
    assert any(r["eventName"] == "MODIFY" for r in records)
    tombstones = [r for r in records if r["dynamodb"]["Keys"]["seq"]["N"] == "3"]
    assert [r["eventName"] for r in tombstones] == ["INSERT"]
    removal = {**records[-1], "eventName": "REMOVE"}
    assert fan.handle([*records, removal]) == {"batchItemFailures": []}
    assert [f["event"]["seq"] for f in received("a=")] == [1, 2]


# --- failures -----------------------------------------------------------------------------


def test_throttled_posts_are_retried_with_growing_backoff(
    fan: Fanout, api: FlakyApi, connections: Connections
) -> None:
    connect(connections, "slow=", "news")
    connect(connections, "fast=", "news")
    api.throttled["slow="] = 3
    delivery = fan.deliver("news", frames.pong())
    assert delivery.sent == 2
    assert api.calls == Counter({"slow=": 4, "fast=": 1})
    assert received("slow=") == [{"type": "pong"}]
    sleeps: list[float] = fan.sleeps  # type: ignore[attr-defined]
    ceilings = [min(1.0, 0.05 * 2**n) for n in range(3)]
    assert len(sleeps) == 3
    assert all(0 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))


def test_a_receiver_throttled_beyond_the_retries_fails_the_record_after_the_others_got_it(
    fan: Fanout, api: FlakyApi, connections: Connections
) -> None:
    connect(connections, "stuck=", "news")
    connect(connections, "fine=", "news")
    api.throttled["stuck="] = 100
    with pytest.raises(DeliveryFailed, match="1 of 2 receivers"):
        fan.deliver("news", frames.pong())
    assert api.calls["stuck="] == fan.max_attempts
    assert received("fine=") == [{"type": "pong"}]


def test_within_a_deadline_a_throttled_post_is_retried_until_it_goes_through(
    fan: Fanout, api: FlakyApi, connections: Connections
) -> None:
    connect(connections, "busy=", "news")
    connect(connections, "fine=", "news")
    throttles = 4 * fan.max_attempts
    api.throttled["busy="] = throttles
    delivery = fan.deliver("news", frames.pong(), deadline=Deadline(lambda: 60_000))
    assert delivery.sent == 2
    assert api.calls["busy="] == throttles + 1  # the cap is for failures, not throttling
    assert received("busy=") == [{"type": "pong"}]
    sleeps: list[float] = fan.sleeps  # type: ignore[attr-defined]
    assert max(sleeps) <= POST_BACKOFF_CAP_SECONDS


def test_a_throttled_post_stops_when_the_deadline_nears_and_the_record_is_retried(
    fan: Fanout, api: FlakyApi, connections: Connections
) -> None:
    connect(connections, "stuck=", "news")
    api.throttled["stuck="] = 1000
    remaining = iter([60_000] * 30 + [0] * 1000)  # the deadline comes during the retries
    with pytest.raises(DeliveryFailed):
        fan.deliver("news", frames.pong(), deadline=Deadline(lambda: next(remaining)))
    assert fan.max_attempts < api.calls["stuck="] <= 30  # stopped by the deadline alone


def test_a_transient_failure_keeps_its_cap_within_a_deadline(
    fan: Fanout, api: FlakyApi, connections: Connections
) -> None:
    connect(connections, "broken=", "news")
    api.failing["broken="] = 100
    with pytest.raises(DeliveryFailed):
        fan.deliver("news", frames.pong(), deadline=Deadline(lambda: 60_000))
    assert api.calls["broken="] == fan.max_attempts


def test_a_receiver_that_refuses_for_good_is_skipped_not_retried(
    fan: Fanout, api: FlakyApi, connections: Connections, dynamodb: Any
) -> None:
    connect(connections, "refuses=", "news")
    connect(connections, "fine=", "news")
    api.refusing = {"refuses="}
    delivery = fan.deliver("news", frames.pong())
    assert (delivery.sent, delivery.refused, delivery.gone) == (1, 1, [])
    assert api.calls["refuses="] == 1
    assert len(all_items(dynamodb)) == 4  # refusing is not gone: nothing deleted


def test_partial_batch_failure_names_the_failed_record_and_keeps_the_ones_before(
    fan: Fanout, api: FlakyApi, connections: Connections, log: EventLog, stream: StreamReader
) -> None:
    connect(connections, "a=", "news", "stuck")
    connect(connections, "b=", "stuck")
    log.publish("news", "first")
    log.publish("stuck", "poisoned")
    log.publish("news", "after")
    records = stream.batch()
    api.throttled["b="] = 100

    response = fan.handle(records)

    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": record["dynamodb"]["SequenceNumber"]} for record in records[1:]
        ]
    }
    # The record before the failure was delivered; nothing after it overtook it.
    assert [(f["event"]["channel"], f["event"]["seq"]) for f in received("a=")] == [
        ("news", 1),
        ("stuck", 1),
    ]
    # Lambda retries from the failed record; once the receiver recovers, all is delivered.
    api.throttled.clear()
    assert fan.handle(records[1:]) == {"batchItemFailures": []}
    assert [(f["event"]["channel"], f["event"]["seq"]) for f in received("a=")] == [
        ("news", 1),
        ("stuck", 1),
        ("stuck", 1),  # a duplicate, which the client drops by seq
        ("news", 2),
    ]
    assert [f["event"]["data"] for f in received("b=")] == ["poisoned"]


def test_a_record_that_is_not_an_event_fails_alone(
    fan: Fanout, connections: Connections, log: EventLog, stream: StreamReader
) -> None:
    connect(connections, "a=", "news")
    log.publish("news", 1)
    [good] = stream.batch()
    bad = json.loads(json.dumps(good))
    bad["dynamodb"]["NewImage"]["event"] = {"S": "not json"}
    bad["dynamodb"]["SequenceNumber"] = "999"
    assert fan.handle([good, bad]) == {"batchItemFailures": [{"itemIdentifier": "999"}]}
    assert len(received("a=")) == 1


def test_the_lambda_entry_point_builds_its_fanout_from_the_environment(
    connections_table: str,
    log: EventLog,
    stream: StreamReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MANAGEMENT_ENDPOINT_ENV, ENDPOINT)
    monkeypatch.setenv("CONNECTIONS_TABLE_NAME", connections_table)
    monkeypatch.setattr(fanout, "_fanout", None)
    # moto answers only boto3's requests; tests/test_management.py posts the deployed way.
    monkeypatch.setattr(management, "_clients", {})
    monkeypatch.setattr(management, "new_client", management.sdk_client)
    connect(Connections(table_name=connections_table), "a=", "news")
    event = log.publish("news", "hello")
    try:
        assert fanout.handler({"Records": stream.batch()}) == {"batchItemFailures": []}
    finally:
        if fanout._fanout is not None:
            fanout._fanout._executor.shutdown()
    assert received("a=") == [{"type": "event", "event": event.to_dict()}]


class LambdaClock:
    """A Lambda context whose remaining time runs down by ``post_ms`` with every post."""

    def __init__(self, api: FlakyApi, *, remaining_ms: int, post_ms: int) -> None:
        self.remaining = remaining_ms
        self.started_late = 0  # posts begun with less than the margin left
        real_post = api.post_to_connection

        def post_to_connection(**kwargs: Any) -> Any:
            with api._lock:
                if self.remaining < FANOUT_DEADLINE_MARGIN_SECONDS * 1000:
                    self.started_late += 1
                self.remaining -= post_ms
            return real_post(**kwargs)

        api.post_to_connection = post_to_connection  # type: ignore[method-assign]

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining


def test_the_fanout_stops_before_its_deadline_and_hands_the_rest_to_the_retry(
    fan: Fanout, api: FlakyApi, connections: Connections, log: EventLog, stream: StreamReader
) -> None:
    receivers = [f"r{i:02d}=" for i in range(20)]
    for connection_id in receivers:
        connect(connections, connection_id, "news")
    for n in range(3):
        log.publish("news", n)
    records = stream.batch()
    # Time for the first record's 20 posts and a few of the second's, then the margin.
    context = LambdaClock(
        api, remaining_ms=FANOUT_DEADLINE_MARGIN_SECONDS * 1000 + 25_000, post_ms=1_000
    )

    response = fan.handle(records, deadline=Deadline.of(context))

    assert context.started_late == 0, "no post begins inside the margin"
    sequence = [record["dynamodb"]["SequenceNumber"] for record in records]
    assert response == {"batchItemFailures": [{"itemIdentifier": n} for n in sequence[1:]]}
    got = {cid: [f["event"]["seq"] for f in received(cid)] for cid in receivers}
    assert all(seqs[0] == 1 for seqs in got.values()), "the first record reached everyone"
    assert sum(seqs == [1, 2] for seqs in got.values()) in range(1, 20), "the second was cut"

    # Lambda retries from the first unfinished record, with a fresh deadline.
    assert fan.handle(
        records[1:], deadline=Deadline.of(LambdaClock(api, remaining_ms=900_000, post_ms=1))
    ) == {"batchItemFailures": []}
    for cid in receivers:
        seqs = [f["event"]["seq"] for f in received(cid)]
        assert seqs.count(1) == 1, "nothing finished before the deadline is delivered twice"
        assert sorted(set(seqs)) == [1, 2, 3]


def test_without_a_context_there_is_no_deadline() -> None:
    assert not Deadline.of(None).near()
    assert Deadline.of(LambdaContextStub(FANOUT_DEADLINE_MARGIN_SECONDS * 1000 - 1)).near()


class LambdaContextStub:
    def __init__(self, remaining_ms: float) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_ms)


def test_a_subscriber_whose_token_expired_is_told_closed_and_forgotten(
    fan: Fanout,
    api: FlakyApi,
    connections: Connections,
    log: EventLog,
    stream: StreamReader,
    dynamodb: Any,
) -> None:
    now = int(time.time())
    connected_at_ms = now * 1000
    for connection_id, token_expires_at in (("stale=", now), ("fresh=", now + 60)):
        connections.connect(connection_id, connected_at_ms=connected_at_ms)
        connections.subscribe(
            connection_id,
            "news",
            connected_at_ms=connected_at_ms,
            token_expires_at=token_expires_at,
        )
    closed: list[str] = []
    api.delete_connection = lambda *, ConnectionId: closed.append(ConnectionId)  # type: ignore[attr-defined]
    event = log.publish("news", "after the expiry")

    assert fan.handle(stream.batch()) == {"batchItemFailures": []}

    assert received("fresh=") == [{"type": "event", "event": event.to_dict()}]
    assert [f["type"] for f in received("stale=")] == ["expired"], "no event after exp"
    assert closed == ["stale="]
    assert not [item for item in all_items(dynamodb) if item["connection_id"]["S"] == "stale="]


# --- subscribe + fan-out: nothing falls between backlog and live ---------------------------


@pytest.mark.parametrize("after", [None, 2])
def test_events_racing_a_subscribe_arrive_in_the_backlog_or_live(
    after: int | None,
    fan: Fanout,
    api: FlakyApi,
    connections: Connections,
    log: EventLog,
    stream: StreamReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(5):
        log.publish("news", n)
    fan.handle(stream.batch())  # fanned out before anyone subscribed
    monkeypatch.delenv(MANAGEMENT_ENDPOINT_ENV, raising=False)

    def publish_and_fan_out(data: str) -> None:
        # The fastest possible fan-out: it runs the moment the event is written.
        log.publish("news", data)
        assert fan.handle(stream.batch()) == {"batchItemFailures": []}

    # Publishers race the subscribe at every step: right after the head is read,
    # while `subscribed` is sent, and in the middle of the backlog.
    original_head = log.head

    def head_then_a_racing_publish(channel: str) -> int:
        head = original_head(channel)
        publish_and_fan_out("right after the head was read")
        return head

    class RacingApi:
        def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> Any:
            publish_and_fan_out("while a frame is sent")
            return api.post_to_connection(ConnectionId=ConnectionId, Data=Data)

    monkeypatch.setattr(log, "head", head_then_a_racing_publish)
    routes.use_services(
        routes.Services(log=log, connections=connections, management_client=lambda _: RacingApi())
    )
    try:
        body = json.dumps({"action": "subscribe", "channel": "news", "after": after})
        now_ms = int(time.time() * 1000)
        context = {
            "routeKey": "subscribe",
            "eventType": "MESSAGE",
            "connectionId": "late=",
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "stage": "ws",
            "connectedAt": now_ms,
            "requestTimeEpoch": now_ms,
            "authorizer": authorizer_context(),
        }
        routes.subscribe({"requestContext": context, "body": body})
    finally:
        routes.use_services(None)

    frames_received = received("late=")
    # A live event may overtake `subscribed` (the fan-out does not wait for the handler).
    assert {"type": "subscribed", "channel": "news", "head": 5} in frames_received
    final_head = original_head("news")
    assert final_head >= 7
    first = 6 if after is None else after + 1
    delivered = [f["event"]["seq"] for f in frames_received if f["type"] == "event"]
    # Duplicates are allowed (the client drops them by seq); a gap is not.
    assert sorted(set(delivered)) == list(range(first, final_head + 1))


# --- the retry policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("GoneException", 410), "gone"),
        (client_error("LimitExceededException", 429), "throttled"),
        (client_error("TooManyRequestsException", 400), "throttled"),
        (client_error("InternalServerErrorException", 500), "retry"),
        (client_error("ServiceUnavailable", 503), "retry"),
        (client_error("ForbiddenException", 403), "permanent"),
        (client_error("PayloadTooLargeException", 413), "permanent"),
        (ConnectionResetError("reset by peer"), "retry"),
    ],
)
def test_post_outcomes_are_classified_by_what_a_retry_can_change(
    error: Exception, kind: str
) -> None:
    assert management.classify(error) == kind


def test_a_connection_error_is_retried_then_reported_as_transient() -> None:
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        calls = 0

        def post_to_connection(self, **_: Any) -> None:
            self.calls += 1
            raise EndpointConnectionError(endpoint_url=ENDPOINT)

    client, sleeps = Unreachable(), list[float]()
    with pytest.raises(management.PostFailed) as caught:
        management.post(client, "a=", "{}", max_attempts=3, sleep=sleeps.append)
    assert caught.value.transient
    assert client.calls == 3
    assert len(sleeps) == 2


def test_fanout_workers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventlog.config import DEFAULT_FANOUT_WORKERS
    from websocket_api.config import fanout_workers

    monkeypatch.delenv("FANOUT_WORKERS", raising=False)
    assert fanout_workers() == DEFAULT_FANOUT_WORKERS
    monkeypatch.setenv("FANOUT_WORKERS", "4")
    assert fanout_workers() == 4
    for bad in ("0", "many"):
        monkeypatch.setenv("FANOUT_WORKERS", bad)
        with pytest.raises(ValueError, match="FANOUT_WORKERS"):
            fanout_workers()


def test_the_sdk_clients_retries_are_off(aws: None) -> None:
    # botocore's retries stay off, so POST_MAX_ATTEMPTS counts every post that is made.
    config = management.sdk_client(ENDPOINT).meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}


# --- reading the subscribers a page at a time -----------------------------------------------


def test_subscribers_come_a_page_at_a_time_and_the_next_is_read_ahead(
    connections: Connections,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"page{n}=" for n in range(5)]
    for connection_id in ids:
        connect(connections, connection_id, "news")
    pages = list(connections.receivers("news", page_size=2))
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(r.connection_id for page in pages for r in page) == ids

    reads: list[str] = []
    read_b = threading.Event()

    def counted() -> Iterator[list[str]]:
        for page in (["a"], ["b"], ["c"]):
            reads.append(page[0])
            if page == ["b"]:
                read_b.set()
            yield page

    with ThreadPoolExecutor(max_workers=1) as reader:
        ahead = fanout._read_ahead(counted(), reader)
        assert next(ahead) == ["a"]
        # "b" is read while the caller still works on "a", before it asks for "b".
        assert read_b.wait(timeout=15)
        assert next(ahead) == ["b"]
        ahead.close()  # the caller stops early (its deadline): nothing is left running
    assert reads[:2] == ["a", "b"]
