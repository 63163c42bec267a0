"""The local WebSocket API: API Gateway's events, routing, limits and @connections API.

The gateway runs on its own event loop in a thread, as it runs beside other
servers in the local stack; the tests are ordinary blocking clients: a
``websockets`` sync client, boto3's ``apigatewaymanagementapi`` and raw sockets.
The route handlers are fakes that record their events and reply through boto3,
except in one test that runs the real routes on moto.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, cast

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import USER_AGENT
from websockets.sync.client import ClientConnection, connect

from local.connections_api import CONNECTION_ID
from local.servers import PortInUse
from local.websocket_gateway import (
    GatewayLimits,
    LocalWebSocketApi,
    new_id,
    policy_allows,
    select_route,
)
from websocket_api import management
from websocket_api.config import MANAGEMENT_ENDPOINT_ENV

WAIT_SECONDS = 5.0

# --- Fakes and harness --------------------------------------------------------------------------


class FakeRoutes:
    """Route handlers that record every event and reply the way the real ones do: by posting."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.authorizer_events: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.post_seconds: list[float] = []
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def routes(self, *, default: bool = True) -> dict[str, Callable[[Mapping[str, Any], Any], Any]]:
        table: dict[str, Callable[[Mapping[str, Any], Any], Any]] = {
            "$connect": self.connect,
            "$disconnect": self.record,
            "ping": self.ping,
            "echo": self.echo,
            "whoami": self.whoami,
            "fail": self.fail,
        }
        if default:
            table["$default"] = self.echo
        return table

    # Handlers (they run on the gateway's worker threads)

    def record(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        with self._lock:
            self.events.append(dict(event))
        return {"statusCode": 200}

    def connect(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        self.record(event)
        query = event.get("queryStringParameters") or {}
        if "post_now" in query:
            # Posting during $connect answers 410 on AWS: the connection is not open yet.
            try:
                self.post(event, {"too": "early"})
            except ClientError as exc:
                self.notes.append(exc.response["Error"]["Code"])
        if "raise" in query:
            raise RuntimeError("$connect failed")
        if "reject" in query:
            return {"statusCode": int(query["reject"])}
        return {"statusCode": 200}

    def ping(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        started = time.perf_counter()
        self.post(event, {"type": "pong"})
        self.post_seconds.append(time.perf_counter() - started)
        return {"statusCode": 200}

    def echo(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        self.record(event)
        route_key = event["requestContext"]["routeKey"]
        self.post(event, {"route": route_key, "bytes": len(event["body"].encode())})
        return {"statusCode": 200}

    def whoami(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        self.record(event)
        self.post(event, {"connectionId": event["requestContext"]["connectionId"]})
        return {"statusCode": 200}

    def fail(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        raise RuntimeError("handler failed")

    def authorizer(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        with self._lock:
            self.authorizer_events.append(dict(event))
        token = (event.get("queryStringParameters") or {}).get("token")
        if token is None:
            raise Exception("Unauthorized")  # the Lambda authorizer convention for 401
        if token == "crash":
            raise RuntimeError("authorizer bug")
        effect = "Deny" if token == "deny" else "Allow"
        context_out: dict[str, Any] = {"sub": token, "scopes": 3, "admin": True}
        if token == "nested":
            context_out = {"channels": ["news"]}  # API Gateway refuses non-scalar values
        return {
            "principalId": f"user-{token}",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": effect,
                        "Resource": event["methodArn"],
                    }
                ],
            },
            "context": context_out,
        }

    # Helpers

    def post(self, event: Mapping[str, Any], frame: Any) -> None:
        # The endpoint is read at call time, as the real handlers do.
        endpoint = management.configured_endpoint()
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = management_client(endpoint)
        connection_id = event["requestContext"]["connectionId"]
        client.post_to_connection(ConnectionId=connection_id, Data=json.dumps(frame).encode())

    def of(self, connection_id: str, route_key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                event
                for event in self.events
                if event["requestContext"]["connectionId"] == connection_id
                and (route_key is None or event["requestContext"]["routeKey"] == route_key)
            ]

    def disconnects(self, connection_id: str) -> list[dict[str, Any]]:
        """The ``$disconnect`` events of a connection, once the first one has arrived."""
        wait_until(lambda: bool(self.of(connection_id, "$disconnect")))
        time.sleep(0.05)  # a second one, if the gateway wrongly sent it, would be here by now
        return self.of(connection_id, "$disconnect")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def management_client(endpoint: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


class RunningGateway:
    """A ``LocalWebSocketApi`` on its own event loop in a thread."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.gateway: LocalWebSocketApi

    async def _main(self) -> None:
        try:
            self.gateway = LocalWebSocketApi(**self._kwargs)
            await self.gateway.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._ready.set()
        await self._stopped.wait()
        await self.gateway.stop()

    def start(self) -> RunningGateway:
        self._thread.start()
        self._ready.wait(WAIT_SECONDS)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(WAIT_SECONDS * 2)
        assert not self._thread.is_alive(), "the gateway did not stop"

    def connect(self, path: str = "/", **kwargs: Any) -> ClientConnection:
        websocket = connect(
            self.gateway.url + path, proxy=None, open_timeout=WAIT_SECONDS, **kwargs
        )
        return cast(ClientConnection, websocket)


StartGateway = Callable[..., RunningGateway]


@pytest.fixture
def fake() -> Iterator[FakeRoutes]:
    routes = FakeRoutes()
    yield routes
    routes.close()


@pytest.fixture
def start_gateway(monkeypatch: pytest.MonkeyPatch, fake: FakeRoutes) -> Iterator[StartGateway]:
    started: list[RunningGateway] = []

    def start(**kwargs: Any) -> RunningGateway:
        kwargs.setdefault("routes", fake.routes())
        running = RunningGateway(**kwargs).start()
        started.append(running)
        monkeypatch.setenv(MANAGEMENT_ENDPOINT_ENV, running.gateway.management_endpoint)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def running(start_gateway: StartGateway) -> RunningGateway:
    return start_gateway()


@pytest.fixture
def boto_client(running: RunningGateway) -> Iterator[Any]:
    client = management_client(running.gateway.management_endpoint)
    yield client
    client.close()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def request(ws: ClientConnection, frame: Any) -> dict[str, Any]:
    ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    return dict(json.loads(ws.recv(timeout=WAIT_SECONDS)))


def whoami(ws: ClientConnection) -> str:
    return str(request(ws, {"action": "whoami"})["connectionId"])


def close_code(ws: ClientConnection) -> int:
    """Read until the server closes; the code of the close frame it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        read_until_closed(ws)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code


def read_until_closed(ws: ClientConnection) -> None:
    while True:
        ws.recv(timeout=WAIT_SECONDS)


def refused_status(running: RunningGateway, path: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        running.connect(path)
    return refused.value.response.status_code


# --- Pure parts ---------------------------------------------------------------------------------


def test_connection_ids_look_like_api_gateway_ids_and_are_url_safe() -> None:
    ids = {new_id() for _ in range(2_000)}
    assert len(ids) == 2_000
    for connection_id in ids:
        assert CONNECTION_ID.fullmatch(connection_id), connection_id
        assert len(base64.urlsafe_b64decode(connection_id)) == 11


def test_route_selection_follows_request_body_action() -> None:
    routes = {"$connect": 1, "$disconnect": 1, "$default": 1, "ping": 1, "publish": 1}
    assert select_route('{"action": "ping"}', routes) == "ping"
    assert select_route('{"action": "publish", "channel": "x"}', routes) == "publish"
    for body in (
        '{"action": "dance"}',  # unknown action
        '{"action": 7}',  # not a string
        '{"no": "action"}',
        '["action", "ping"]',  # JSON, not an object
        "ping",  # not JSON
        "",
        '{"action": "$connect"}',  # reserved routes are never selected by a message
        '{"action": "$disconnect"}',
        "[" * 100_000,  # deeper than the JSON parser recurses
    ):
        assert select_route(body, routes) == "$default", body


def test_policy_evaluation_matches_iam_wildcards_and_deny_wins() -> None:
    arn = "arn:aws:execute-api:us-east-1:000000000000:abc123/local/$connect"

    def policy(*statements: tuple[str, str]) -> dict[str, Any]:
        return {
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
                for effect, resource in statements
            ]
        }

    assert policy_allows(policy(("Allow", arn)), arn)
    assert policy_allows(policy(("Allow", "arn:aws:execute-api:us-east-1:*:abc123/*")), arn)
    assert policy_allows(
        policy(("Allow", "arn:aws:execute-api:us-east-1:*:abc12?/*/$connect")), arn
    )
    assert not policy_allows(policy(("Allow", "arn:aws:execute-api:us-east-1:*:other/*")), arn)
    assert not policy_allows(policy(("Allow", "*"), ("Deny", arn)), arn)
    assert not policy_allows(policy(("Deny", arn)), arn)
    assert not policy_allows({"Statement": []}, arn)
    s3 = {"Statement": {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}}
    assert not policy_allows(s3, arn)


def test_limits_default_to_api_gateway_values() -> None:
    limits = GatewayLimits()
    assert (limits.max_frame_bytes, limits.max_message_bytes) == (32 * 1024, 128 * 1024)
    assert (limits.idle_timeout_seconds, limits.max_connection_seconds) == (600, 7200)
    with pytest.raises(ValueError, match="max_frame_bytes"):
        GatewayLimits(max_frame_bytes=2048, max_message_bytes=1024)


# --- Events -------------------------------------------------------------------------------------


def test_connect_event_has_the_shape_lambda_receives(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    with running.connect("/local?b=x&a=1&a=2&empty=", additional_headers={"X-Custom": "yes"}) as ws:
        connection_id = whoami(ws)
    [event] = fake.of(connection_id, "$connect")
    context = event["requestContext"]
    gateway = running.gateway
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["connectionId"] == connection_id
    assert context["stage"] == "local"
    assert context["apiId"] == gateway.api_id
    assert re.fullmatch(r"[a-z0-9]{10}", context["apiId"])
    assert context["domainName"] == gateway.url.removeprefix("ws://")
    assert context["messageDirection"] == "IN"
    assert CONNECTION_ID.fullmatch(context["requestId"])
    assert CONNECTION_ID.fullmatch(context["extendedRequestId"])
    assert isinstance(context["connectedAt"], int)
    assert context["connectedAt"] <= context["requestTimeEpoch"] <= time.time() * 1000
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", context["requestTime"])
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": USER_AGENT}
    assert "messageId" not in context
    assert "authorizer" not in context
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert event["headers"]["X-Custom"] == "yes"
    assert event["headers"]["Host"] == context["domainName"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert "Upgrade" not in event["headers"]
    assert "Connection" not in event["headers"]
    assert event["multiValueHeaders"]["X-Custom"] == ["yes"]
    assert event["queryStringParameters"] == {"b": "x", "a": "2", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"b": ["x"], "a": ["1", "2"], "empty": [""]}


def test_connect_without_query_string_has_none(running: RunningGateway, fake: FakeRoutes) -> None:
    with running.connect() as ws:
        connection_id = whoami(ws)
    [event] = fake.of(connection_id, "$connect")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None


def test_message_and_disconnect_events_have_the_shape_lambda_receives(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    with running.connect() as ws:
        connection_id = whoami(ws)
        request(ws, {"action": "echo", "text": "héllo"})
        ws.close(1000, "bye")
    [connect_event] = fake.of(connection_id, "$connect")
    whoami_event, echo_event = fake.of(connection_id)[1:3]
    for event, route_key in ((whoami_event, "whoami"), (echo_event, "echo")):
        context = event["requestContext"]
        assert context["routeKey"] == route_key
        assert context["eventType"] == "MESSAGE"
        assert context["connectionId"] == connection_id
        assert context["connectedAt"] == connect_event["requestContext"]["connectedAt"]
        assert CONNECTION_ID.fullmatch(context["messageId"])
        assert event["isBase64Encoded"] is False
        assert "headers" not in event
    assert json.loads(echo_event["body"]) == {"action": "echo", "text": "héllo"}
    assert whoami_event["requestContext"]["messageId"] != echo_event["requestContext"]["messageId"]

    [disconnect] = fake.disconnects(connection_id)
    context = disconnect["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1000
    assert context["disconnectReason"] == "bye"
    assert context["connectedAt"] == connect_event["requestContext"]["connectedAt"]
    assert "messageId" not in context
    assert "body" not in disconnect


def test_messages_are_routed_on_action_with_default_for_the_rest(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    with running.connect() as ws:
        assert request(ws, {"action": "ping"}) == {"type": "pong"}
        assert request(ws, {"action": "echo"})["route"] == "echo"
        assert request(ws, {"action": "dance"})["route"] == "$default"
        assert request(ws, "not json at all")["route"] == "$default"
        assert request(ws, '[{"action": "ping"}]')["route"] == "$default"
        assert request(ws, {"action": "$disconnect"})["route"] == "$default"


def test_messages_of_one_connection_are_handled_in_order(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    with running.connect() as ws:
        for n in range(30):
            ws.send(json.dumps({"action": "echo", "n": n}))
        replies = [json.loads(ws.recv(timeout=WAIT_SECONDS)) for _ in range(30)]
        connection_id = whoami(ws)
    assert [reply["route"] for reply in replies] == ["echo"] * 30
    bodies = [json.loads(e["body"]) for e in fake.of(connection_id, "echo")]
    assert [body["n"] for body in bodies] == list(range(30))


def test_without_default_route_an_unmatched_message_gets_forbidden(
    start_gateway: StartGateway, fake: FakeRoutes
) -> None:
    running = start_gateway(routes=fake.routes(default=False))
    with running.connect() as ws:
        connection_id = whoami(ws)
        reply = request(ws, {"action": "dance"})
        assert reply["message"] == "Forbidden"
        assert reply["connectionId"] == connection_id
        assert CONNECTION_ID.fullmatch(reply["requestId"])
        assert request(ws, {"action": "ping"}) == {"type": "pong"}  # still open


def test_a_handler_that_raises_gets_internal_server_error_and_the_connection_stays(
    running: RunningGateway,
) -> None:
    with running.connect() as ws:
        connection_id = whoami(ws)
        reply = request(ws, {"action": "fail"})
        assert reply["message"] == "Internal server error"
        assert reply["connectionId"] == connection_id
        assert request(ws, {"action": "ping"}) == {"type": "pong"}


# --- $connect and the authorizer ---------------------------------------------------------------


def test_connect_rejection_is_an_http_error_and_no_connection(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    assert refused_status(running, "/?reject=403") == 403
    assert refused_status(running, "/?reject=429") == 429
    assert refused_status(running, "/?raise=1") == 500
    assert refused_status(running, "/another-stage") == 403
    connects = [e for e in fake.events if e["requestContext"]["routeKey"] == "$connect"]
    assert len(connects) == 3
    assert running.gateway.connection_count == 0
    time.sleep(0.1)
    assert not [e for e in fake.events if e["requestContext"]["routeKey"] == "$disconnect"]
    with running.connect("/local") as ws:  # the stage path is accepted, like the root
        assert request(ws, {"action": "ping"}) == {"type": "pong"}


def test_posting_during_connect_is_gone_as_on_aws(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    with running.connect("/?post_now=1") as ws:
        assert request(ws, {"action": "ping"}) == {"type": "pong"}  # "too early" never arrived
    assert fake.notes == ["GoneException"]


def test_authorizer_allow_passes_its_context_on_every_event(
    start_gateway: StartGateway, fake: FakeRoutes
) -> None:
    running = start_gateway(authorizer=fake.authorizer)
    with running.connect("/local?token=alice", additional_headers={"Auth": "h"}) as ws:
        connection_id = whoami(ws)
        request(ws, {"action": "echo"})
    expected = {"principalId": "user-alice", "sub": "alice", "scopes": "3", "admin": "true"}
    fake.disconnects(connection_id)
    events = fake.of(connection_id)
    routes = [event["requestContext"]["routeKey"] for event in events]
    assert routes == ["$connect", "whoami", "echo", "$disconnect"]
    for event in events:
        assert event["requestContext"]["authorizer"] == expected

    [auth_event] = fake.authorizer_events
    gateway = running.gateway
    assert auth_event["type"] == "REQUEST"
    assert auth_event["methodArn"] == (
        f"arn:aws:execute-api:us-east-1:000000000000:{gateway.api_id}/local/$connect"
    )
    assert auth_event["queryStringParameters"] == {"token": "alice"}
    assert auth_event["multiValueQueryStringParameters"] == {"token": ["alice"]}
    assert auth_event["headers"]["Auth"] == "h"
    assert auth_event["stageVariables"] == {}
    assert auth_event["requestContext"]["connectionId"] == connection_id
    assert auth_event["requestContext"]["routeKey"] == "$connect"
    assert "authorizer" not in auth_event["requestContext"]


def test_authorizer_refusals_happen_before_connect(
    start_gateway: StartGateway, fake: FakeRoutes
) -> None:
    running = start_gateway(authorizer=fake.authorizer)
    assert refused_status(running, "/?token=deny") == 403
    assert refused_status(running, "/") == 401
    assert refused_status(running, "/?token=crash") == 500
    assert refused_status(running, "/?token=nested") == 500
    assert len(fake.authorizer_events) == 4
    assert fake.events == []  # $connect never ran
    assert running.gateway.connection_count == 0


# --- The @connections API -----------------------------------------------------------------------


def test_connections_api_post_get_delete_through_boto3(
    running: RunningGateway, fake: FakeRoutes, boto_client: Any
) -> None:
    with running.connect() as ws:
        connection_id = whoami(ws)
        boto_client.post_to_connection(ConnectionId=connection_id, Data=b'{"hello": 1}')
        assert json.loads(ws.recv(timeout=WAIT_SECONDS)) == {"hello": 1}

        info = boto_client.get_connection(ConnectionId=connection_id)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert info["Identity"]["UserAgent"].startswith("Python/")
        connected_at = info["ConnectedAt"].timestamp()
        assert time.time() - 10 < connected_at <= info["LastActiveAt"].timestamp() <= time.time()

        response = boto_client.delete_connection(ConnectionId=connection_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert close_code(ws) == 1000
    [disconnect] = fake.disconnects(connection_id)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000

    calls: list[Callable[[], Any]] = [
        lambda: boto_client.post_to_connection(ConnectionId=connection_id, Data=b"late"),
        lambda: boto_client.get_connection(ConnectionId=connection_id),
        lambda: boto_client.delete_connection(ConnectionId=connection_id),
        lambda: boto_client.post_to_connection(ConnectionId=new_id(), Data=b"never there"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as gone:
            call()
        assert gone.value.response["Error"]["Code"] == "GoneException"
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
        assert management.classify(gone.value) == "gone"


def test_connections_api_refuses_frames_over_the_message_limit(
    running: RunningGateway, boto_client: Any
) -> None:
    limit = running.gateway.limits.max_message_bytes
    with running.connect() as ws:
        connection_id = whoami(ws)
        with pytest.raises(ClientError) as too_large:
            boto_client.post_to_connection(ConnectionId=connection_id, Data=b"x" * (limit + 1))
        assert too_large.value.response["Error"]["Code"] == "PayloadTooLargeException"
        assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert management.classify(too_large.value) == "permanent"
        boto_client.post_to_connection(ConnectionId=connection_id, Data=b"y" * limit)
        assert ws.recv(timeout=WAIT_SECONDS) == "y" * limit


def test_connections_api_answers_only_under_the_stage(running: RunningGateway) -> None:
    endpoint = running.gateway.management_endpoint
    root = endpoint.removesuffix("/local")
    assert endpoint == root + "/local"  # the stage's callback URL, as infra sets it
    unstaged = management_client(root)
    wrong_stage = management_client(root + "/prod")
    try:
        with running.connect() as ws:
            connection_id = whoami(ws)
            for client in (unstaged, wrong_stage):
                with pytest.raises(ClientError) as forbidden:
                    client.post_to_connection(ConnectionId=connection_id, Data=b"lost")
                assert forbidden.value.response["Error"]["Code"] == "ForbiddenException"
                assert forbidden.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

            # boto3 sends "=" as "%3D"; a literal "=" must work as well.
            encoded = connection_id.replace("=", "%3D")
            for path in (f"/@connections/{encoded}", f"/@connections/{connection_id}"):
                assert httpx.post(endpoint + path, content=b"raw").status_code == 200
                assert ws.recv(timeout=WAIT_SECONDS) == "raw"
    finally:
        unstaged.close()
        wrong_stage.close()


def test_a_malformed_connection_id_is_400_and_an_unknown_one_410(
    running: RunningGateway, boto_client: Any
) -> None:
    for malformed in ("not-an-id", new_id()[:-1], new_id() + "A", "!" * 15 + "="):
        calls: list[Callable[[], Any]] = [
            partial(boto_client.post_to_connection, ConnectionId=malformed, Data=b"x"),
            partial(boto_client.get_connection, ConnectionId=malformed),
            partial(boto_client.delete_connection, ConnectionId=malformed),
        ]
        for call in calls:
            with pytest.raises(ClientError) as bad:
                call()
            assert bad.value.response["Error"]["Code"] == "BadRequestException"
            assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert bad.value.response["Error"]["Message"] == f"Invalid connectionId: {malformed}"
            assert management.classify(bad.value) == "permanent"  # not a client that left

    with pytest.raises(ClientError) as gone:
        boto_client.post_to_connection(ConnectionId=new_id(), Data=b"x")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


# --- Limits and every kind of close -------------------------------------------------------------


def test_a_frame_over_the_frame_limit_closes_with_1009(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    limit = running.gateway.limits.max_frame_bytes
    with running.connect() as ws:
        connection_id = whoami(ws)
        assert request(ws, "x" * limit)["bytes"] == limit  # exactly the limit passes
        ws.send("x" * (limit + 1))
        assert close_code(ws) == 1009
    [disconnect] = fake.disconnects(connection_id)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1009


def test_a_message_is_limited_across_its_frames(running: RunningGateway, fake: FakeRoutes) -> None:
    limits = running.gateway.limits
    fragment = "y" * limits.max_frame_bytes
    fragments = limits.max_message_bytes // limits.max_frame_bytes
    with running.connect() as ws:
        connection_id = whoami(ws)
        ws.send([fragment] * fragments)  # 128 KB in 32 KB frames: one message, accepted
        reply = json.loads(ws.recv(timeout=WAIT_SECONDS))
        assert reply == {"route": "$default", "bytes": limits.max_message_bytes}
        # The gateway closes on the frame that crosses the limit, which can be before the
        # client has sent the message's last (empty, final) frame.
        with contextlib.suppress(ConnectionClosed):
            ws.send([fragment] * fragments + ["z"])
        assert close_code(ws) == 1009
    echoed = fake.of(connection_id, "$default")
    assert [len(event["body"]) for event in echoed] == [limits.max_message_bytes]
    [disconnect] = fake.disconnects(connection_id)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1009


def test_a_binary_frame_closes_with_1003(running: RunningGateway, fake: FakeRoutes) -> None:
    with running.connect() as ws:
        connection_id = whoami(ws)
        ws.send(b'{"action": "ping"}')
        assert close_code(ws) == 1003
    [disconnect] = fake.disconnects(connection_id)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1003
    assert fake.of(connection_id, "ping") == []


def test_an_idle_connection_is_closed_with_1001(
    start_gateway: StartGateway, fake: FakeRoutes
) -> None:
    running = start_gateway(limits=GatewayLimits(idle_timeout_seconds=0.8))
    with running.connect() as ws:
        connection_id = whoami(ws)
        for _ in range(12):  # 1.2 s of messages every 0.1 s: activity keeps it open
            time.sleep(0.1)
            assert request(ws, {"action": "ping"}) == {"type": "pong"}
        assert close_code(ws) == 1001
    [disconnect] = fake.disconnects(connection_id)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1001
    assert disconnect["requestContext"]["disconnectReason"] == "idle timeout"


def test_a_connection_is_closed_at_its_maximum_duration(
    start_gateway: StartGateway, fake: FakeRoutes
) -> None:
    running = start_gateway(limits=GatewayLimits(max_connection_seconds=0.5))
    with running.connect() as ws:
        connection_id = whoami(ws)
        assert close_code(ws) == 1001
    [disconnect] = fake.disconnects(connection_id)
    assert disconnect["requestContext"]["disconnectReason"] == "maximum connection duration reached"


def test_a_connection_lost_without_close_frame_gets_disconnect_1006(
    running: RunningGateway, fake: FakeRoutes
) -> None:
    host, port = running.gateway.url.removeprefix("ws://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT_SECONDS) as raw:
        raw.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert raw.recv(1024).startswith(b"HTTP/1.1 101")
    [connect_event] = [e for e in fake.events if e["requestContext"]["routeKey"] == "$connect"]
    connection_id = connect_event["requestContext"]["connectionId"]
    [disconnect] = fake.disconnects(connection_id)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1006
    assert "identity" in disconnect["requestContext"]


def test_stop_closes_every_connection_and_runs_each_disconnect(
    start_gateway: StartGateway, fake: FakeRoutes
) -> None:
    running = start_gateway()
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(running.connect()) for _ in range(3)]
        ids = [whoami(ws) for ws in clients]
        running.stop()
        for ws in clients:
            assert close_code(ws) == 1001
    for connection_id in ids:
        [disconnect] = fake.of(connection_id, "$disconnect")  # done before stop() returned
        assert disconnect["requestContext"]["disconnectStatusCode"] == 1001


def test_a_port_in_use_is_a_clear_error(start_gateway: StartGateway) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port}"):
            start_gateway(port=port)
        with pytest.raises(PortInUse, match="@connections"):
            start_gateway(management_port=port)


def test_logs_show_connections_and_routes_but_never_query_strings(
    running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running.connect("/?token=s3cr3t-t0ken") as ws:
        connection_id = whoami(ws)
        request(ws, {"action": "ping"})
    wait_until(lambda: f"{connection_id} closed" in caplog.text)
    assert refused_status(running, "/?reject=403&token=s3cr3t-t0ken") == 403
    # The client is the test's own (its DEBUG log shows the URL it opens); the server's are these:
    server_logs = "\n".join(
        caplog.handler.format(record)
        for record in caplog.records
        if not record.name.startswith("websockets.client")
    )
    assert f"{connection_id} open from 127.0.0.1" in server_logs
    assert f"{connection_id} whoami -> 200" in server_logs
    assert f"{connection_id} closed: 1000" in server_logs
    assert "refused before the handshake: 403" in server_logs
    assert "s3cr3t-t0ken" not in server_logs


# --- The real routes, on moto -------------------------------------------------------------------


def test_the_real_routes_run_behind_the_gateway_with_the_real_authorizer(
    start_gateway: StartGateway, dynamodb: Any, events_table: str, connections_table: str
) -> None:
    from auth.claims import grant
    from eventlog import EventLog
    from eventlog.config import Settings
    from tests.auth_support import bad_tokens, token, verifier
    from websocket_api import authorizer, routes
    from websocket_api.config import IDENTITY_SOURCE
    from websocket_api.connections import Connections

    routes.use_services(
        routes.Services(
            log=EventLog(settings=Settings(events_table_name=events_table), client=dynamodb),
            connections=Connections(table_name=connections_table, client=dynamodb),
            management_client=lambda endpoint: management.new_client(
                endpoint, max_pool_connections=2
            ),
        )
    )
    authorizer.use_verifier(verifier())
    try:
        running = start_gateway(
            routes=routes.ROUTES,
            authorizer=authorizer.handler,
            identity_source=(IDENTITY_SOURCE,),
        )
        # Refused before $connect runs: 401 for no or bad tokens, 403 for one granting nothing.
        for name, (value, status, _code) in bad_tokens("subscribe").items():
            if status == 401:
                path = "/local" if value is None else f"/local?token={value}"
                assert refused_status(running, path) == 401, name
        assert refused_status(running, f"/local?token={token(grant('news', *[]))}") == 403
        assert dynamodb.scan(TableName=connections_table)["Items"] == []

        allowed = token(grant("news", "subscribe", "publish"), grant("sports", "subscribe"))
        with running.connect(f"/local?token={allowed}") as ws:
            published = request(ws, {"action": "publish", "channel": "news", "data": {"n": 1}})
            assert published["type"] == "published"
            assert published["event"]["seq"] == 1
            assert request(ws, {"action": "subscribe", "channel": "news", "after": 0}) == {
                "type": "subscribed",
                "channel": "news",
                "head": 1,
            }
            backlog = json.loads(ws.recv(timeout=WAIT_SECONDS))
            assert backlog == {"type": "event", "event": published["event"]}
            for frame in (
                {"action": "publish", "channel": "sports", "data": 1},  # no publish scope
                {"action": "subscribe", "channel": "weather"},  # no grant at all
            ):
                refused = request(ws, frame)
                assert (refused["type"], refused["code"]) == ("error", "forbidden")
            assert request(ws, {"action": "ping"}) == {"type": "pong"}
            assert request(ws, "not json")["code"] == "bad_json"
            assert request(ws, {"action": "dance"})["code"] == "unknown_action"
            items = dynamodb.scan(TableName=connections_table)["Items"]
            assert {item["pk"]["S"] for item in items if "channel" in item} == {"channel#news"}
        wait_until(lambda: dynamodb.scan(TableName=connections_table)["Items"] == [])
    finally:
        routes.use_services(None)
        authorizer.use_verifier(None)


def test_a_missing_identity_source_is_401_without_invoking_the_authorizer(
    start_gateway: StartGateway, fake: FakeRoutes
) -> None:
    running = start_gateway(
        authorizer=fake.authorizer,
        identity_source=("route.request.querystring.token", "route.request.header.X-Tenant"),
    )
    assert refused_status(running, "/?token=alice") == 401  # no X-Tenant header
    assert refused_status(running, "/?token=&other=1") == 401  # an empty token
    assert fake.authorizer_events == []
    with running.connect("/?token=alice", additional_headers={"x-tenant": "t1"}) as ws:
        assert request(ws, {"action": "ping"}) == {"type": "pong"}
    assert len(fake.authorizer_events) == 1
    with pytest.raises(ValueError, match="unsupported identity source"):
        LocalWebSocketApi(routes={}, identity_source=("context.requestId",))


# --- What the gateway costs ---------------------------------------------------------------------


def test_ping_round_trip_through_the_gateway(running: RunningGateway, fake: FakeRoutes) -> None:
    """ping -> handler thread -> boto3 POST /@connections -> pong; printed, not asserted."""
    with running.connect() as ws:
        for _ in range(20):  # warm the pool and boto3's connection
            request(ws, {"action": "ping"})
        wait_until(lambda: len(fake.post_seconds) == 20)  # the last one records after replying
        fake.post_seconds.clear()
        samples = []
        for _ in range(200):
            started = time.perf_counter()
            assert request(ws, {"action": "ping"}) == {"type": "pong"}
            samples.append(time.perf_counter() - started)
    wait_until(lambda: len(fake.post_seconds) == 200)

    def summary(seconds: list[float]) -> str:
        ms = sorted(s * 1000 for s in seconds)
        return f"median {statistics.median(ms):.2f} ms, p90 {ms[int(len(ms) * 0.9)]:.2f} ms"

    print(
        f"\nping round trip over {len(samples)}: {summary(samples)}; of which the handler's "
        f"post_to_connection: {summary(fake.post_seconds)} ({os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f})"
    )


# --- Disorder (local.disorder's hooks) ------------------------------------------------------


def test_a_delayed_message_is_overtaken_by_a_later_one(start_gateway: StartGateway) -> None:
    delays = iter([0.5, 0.0])  # the first message waits, the second does not
    running = start_gateway(message_delay=lambda: next(delays, 0.0))
    with running.connect() as ws:
        first = json.dumps({"action": "echo", "n": "first"})
        second = json.dumps({"action": "echo", "n": "second, longer"})
        ws.send(first)
        ws.send(second)
        replies = [json.loads(ws.recv(timeout=WAIT_SECONDS)) for _ in range(2)]
    assert [reply["bytes"] for reply in replies] == [len(second), len(first)]


def test_a_throttled_connections_request_is_answered_429_and_not_delivered(
    start_gateway: StartGateway,
) -> None:
    throttling = {"on": False}
    running = start_gateway(connections_throttled=lambda: throttling["on"])
    client = management_client(running.gateway.management_endpoint)
    try:
        with running.connect() as ws:
            connection_id = whoami(ws)
            throttling["on"] = True
            with pytest.raises(ClientError) as throttled:
                client.post_to_connection(ConnectionId=connection_id, Data=b'"dropped"')
            error = throttled.value.response
            assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
                "LimitExceededException",
                429,
            )
            assert management.classify(throttled.value) == "throttled"
            throttling["on"] = False
            client.post_to_connection(ConnectionId=connection_id, Data=b'"delivered"')
            assert json.loads(ws.recv(timeout=WAIT_SECONDS)) == "delivered"  # not "dropped"
    finally:
        client.close()
