"""End to end: real clients against the running local stack (``python -m local``).

Each test runs twice, on the orderly local stack and on one under disorder
(``local.disorder``: requests handled out of order, the stream in late batches,
throttling): every transport must deliver each event once and in order in both.

The tests find the stack through its endpoints file only, so the same tests run
against a deployed stack: ``E2E_OUTPUTS_FILE=.local/deployed-outputs.json`` and a
token that may do everything in ``E2E_TOKEN`` (the local stack, with auth on as
``make dev`` runs it, issues development tokens itself). The tests that look behind
the transports (the stale-connection cleanup, the stack's own logs) need what only
the local stack writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from client import ClientError, open_transport
from client.auth import Credentials, DevTokens, TokenSource
from client.base import Subscription
from client.transports import OUTPUT_KEYS, TransportName, present_in
from client.websocket import with_token
from eventlog import endpoints
from eventlog.endpoints import Endpoints
from eventlog.events import Event

pytestmark = pytest.mark.anyio

TRANSPORTS: tuple[TransportName, ...] = ("polling", "sse", "websocket")


def need(found: Endpoints, *names: TransportName) -> None:
    """Skip unless the endpoints offer ``names``: a checkout may have removed a transport."""
    missing = [name for name in names if name not in present_in(found)]
    if missing:
        keys = ", ".join(OUTPUT_KEYS[name] for name in missing)
        pytest.skip(f"no {keys} in the endpoints file: {', '.join(missing)} is not here")


def a_publisher(found: Endpoints) -> TransportName:
    """Any transport publishes (docs/ARCHITECTURE.md): the first the endpoints offer."""
    return present_in(found)[0]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def deployed_outputs() -> Path | None:
    path = os.environ.get("E2E_OUTPUTS_FILE")
    return Path(path) if path else None


@pytest.fixture(scope="session")
def outputs(
    request: pytest.FixtureRequest, deployed_outputs: Path | None, mode: str
) -> dict[str, Any]:
    """Every test runs on the orderly stack and on the disorderly one (``tests.e2e_support``)."""
    from tests.e2e_support import stack_for

    if deployed_outputs:
        if mode != "orderly":
            pytest.skip("a deployment brings its own disorder")
        loaded: dict[str, Any] = json.loads(deployed_outputs.read_text())
        return loaded
    return stack_for(request, mode).outputs


@pytest.fixture(scope="session")
def found(outputs: dict[str, Any]) -> Endpoints:
    return Endpoints.from_outputs(outputs)


@pytest.fixture(scope="session")
def token(found: Endpoints, deployed_outputs: Path | None) -> TokenSource:
    """Every scope on every channel: ``E2E_TOKEN``, else the local stack's development tokens.

    ``make smoke`` (tests/smoke.py) sets ``E2E_TOKEN`` for a deployment; an endpoints file
    of a running ``make dev`` names its token endpoint instead.
    """
    if os.environ.get("E2E_TOKEN"):
        return os.environ["E2E_TOKEN"]
    if deployed_outputs and not found.dev_token_url:
        pytest.fail("a deployment needs a token: run `make smoke`, or set E2E_TOKEN")
    assert found.dev_token_url, "the local stack runs with auth on and issues dev tokens"
    return DevTokens(found.dev_token_url)


async def a_token(source: TokenSource) -> str:
    value = await Credentials(source).token()
    assert value
    return value


@pytest.fixture
def channel() -> str:
    """A fresh channel per test, so tests never see each other's events."""
    return f"e2e-{uuid.uuid4().hex[:12]}"


async def take(subscription: Subscription, count: int, *, within: float = 20.0) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            events.append(await anext(subscription))
    return events


async def test_one_event_published_once_arrives_on_every_transport(
    found: Endpoints, channel: str, token: TokenSource
) -> None:
    async with contextlib.AsyncExitStack() as opened:
        transports = [
            await opened.enter_async_context(open_transport(name, found, token=token))
            for name in present_in(found)
        ]
        subscriptions = [await transport.subscribe(channel) for transport in transports]
        published = await transports[0].publish(channel, {"hello": "everyone"})
        received = await asyncio.gather(*(take(s, 1) for s in subscriptions))
        for events in received:
            assert events == [published]
        for subscription in subscriptions:
            await subscription.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_forced_disconnect_loses_and_repeats_nothing(
    found: Endpoints, channel: str, transport: TransportName, token: TokenSource
) -> None:
    need(found, transport)
    total = 30
    async with (
        open_transport(transport, found, token=token) as subscriber,
        open_transport(a_publisher(found), found, token=token) as publisher,
    ):
        subscription = await subscriber.subscribe(channel, after=0)

        async def publish_steadily() -> list[Event]:
            sent = []
            for n in range(total):
                sent.append(await publisher.publish(channel, {"n": n}))
                await asyncio.sleep(0.02)
            return sent

        async def drop_twice() -> None:
            for _ in range(2):
                await asyncio.sleep(0.2)
                connections = subscription.stats.connections
                await subscription.drop_connection()
                async with asyncio.timeout(20):  # back before the next drop
                    while subscription.stats.connections == connections:  # noqa: ASYNC110 - a counter the client owns
                        await asyncio.sleep(0.02)

        publishing = asyncio.create_task(publish_steadily())
        await drop_twice()
        received = await take(subscription, total, within=60)
        sent = await publishing
        assert [e.seq for e in received] == list(range(1, total + 1))
        assert received == sent
        assert subscription.stats.reconnects >= 2
        await subscription.close()


async def test_a_vanished_websocket_client_is_removed_by_the_fanout(
    outputs: dict[str, Any], found: Endpoints, channel: str, token: TokenSource
) -> None:
    need(found, "websocket")
    log_outputs = outputs.get(endpoints.EVENT_LOG_STACK, {})
    if endpoints.LOCAL_DYNAMODB_ENDPOINT not in log_outputs:
        pytest.skip("needs the tables' endpoint, which only the local stack writes")
    import boto3

    from websocket_api.connections import Connections

    client = boto3.client(
        "dynamodb",
        endpoint_url=log_outputs[endpoints.LOCAL_DYNAMODB_ENDPOINT],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    table = outputs[endpoints.WEBSOCKET_STACK][endpoints.CONNECTIONS_TABLE_NAME]
    connections = Connections(table_name=table, client=client)
    # A connection whose $disconnect never came: its records remain, the socket is gone.
    # Well-formed, as API Gateway's ids are: a malformed one is answered 400, not 410 Gone.
    ghost = "GhostConnId0000="
    now_ms = int(time.time() * 1000)
    connections.connect(ghost, connected_at_ms=now_ms)
    connections.subscribe(ghost, channel, connected_at_ms=now_ms)

    async with open_transport("websocket", found, token=token) as live:
        subscription = await live.subscribe(channel)
        published = await live.publish(channel, "after the ghost left")
        assert await take(subscription, 1) == [published]
        await subscription.close()

    # The fan-out posted to the ghost, got 410 Gone and deleted its records.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        remaining = [c for page in connections.subscribers(channel) for c in page]
        if ghost not in remaining:
            break
        await asyncio.sleep(0.1)
    assert ghost not in [c for page in connections.subscribers(channel) for c in page]


async def test_bad_input_gets_a_problem_on_polling(found: Endpoints, token: TokenSource) -> None:
    need(found, "polling")
    assert found.polling_api_url
    headers = {"Authorization": f"Bearer {await a_token(token)}"}
    async with httpx.AsyncClient(
        base_url=found.polling_api_url, timeout=10, headers=headers
    ) as http:
        response = await http.post("/channels/no%20spaces/events", json={"data": 1})
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "invalid_channel"

        response = await http.get("/channels/news/events", params={"after": "-1"})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_cursor"


async def test_bad_input_gets_a_problem_on_sse(found: Endpoints, token: TokenSource) -> None:
    need(found, "sse")
    assert found.sse_url
    headers = {"Authorization": f"Bearer {await a_token(token)}", "Last-Event-ID": "soon"}
    async with httpx.AsyncClient(base_url=found.sse_url, timeout=10) as http:
        response = await http.get("/channels/news/stream", headers=headers)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "invalid_cursor"


async def test_bad_input_gets_an_error_frame_on_websocket(
    found: Endpoints, token: TokenSource
) -> None:
    need(found, "websocket")
    assert found.websocket_url
    url = with_token(found.websocket_url, await a_token(token))
    async with websockets.connect(url) as socket:
        await socket.send("not json")
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert (frame["type"], frame["code"]) == ("error", "bad_json")
        await socket.send(json.dumps({"action": "subscribe", "channel": "bad channel"}))
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert (frame["type"], frame["code"]) == ("error", "invalid_channel")
        # the connection stays open after errors
        await socket.send(json.dumps({"action": "ping"}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10)) == {"type": "pong"}


async def test_the_client_refuses_bad_input_before_sending(
    found: Endpoints, token: TokenSource
) -> None:
    async with open_transport(a_publisher(found), found, token=token) as publisher:
        with pytest.raises(ClientError) as refused:
            await publisher.publish("bad channel", 1)
        assert refused.value.code == "invalid_channel"


def test_the_endpoints_file_has_the_transports_of_this_checkout(found: Endpoints) -> None:
    from local.transports import present_transports

    assert set(present_in(found)) == set(present_transports())
    assert found.log_api_url or present_in(found) == ("websocket",)
    if found.websocket_url:
        assert found.websocket_url.startswith(("ws://", "wss://"))


# --- Auth ---------------------------------------------------------------------------------------


async def test_nothing_answers_without_a_valid_token(found: Endpoints, channel: str) -> None:
    # Every transport present; the log's HTTP API wherever it is served (polling, SSE).
    http_urls = [url for url in (found.polling_api_url, found.sse_url) if url]
    bad = {"no token": {}, "a forged token": {"token": "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"}}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, params in bad.items():
            requests = []
            for url in http_urls:
                events = f"{url}/channels/{channel}/events"
                requests += [
                    http.build_request("GET", events, params=params),
                    http.build_request("POST", events, params=params, json={"data": 1}),
                ]
            if found.sse_url:
                requests.append(
                    http.build_request(
                        "GET", f"{found.sse_url}/channels/{channel}/stream", params=params
                    )
                )
            for request in requests:
                response = await http.send(request)
                assert response.status_code == 401, (name, request.method, request.url)
                assert response.json()["code"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Bearer")
            if found.websocket_url:
                with pytest.raises(websockets.InvalidStatus) as refused:
                    async with websockets.connect(
                        with_token(found.websocket_url, params.get("token"))
                    ):
                        pass
                assert refused.value.response.status_code == 401, name
        # Open without a token: health checks.
        for url in http_urls:
            assert (await http.get(f"{url}/healthz")).status_code == 200


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_token_for_another_channel_is_forbidden(
    found: Endpoints, channel: str, transport: TransportName, deployed_outputs: Path | None
) -> None:
    need(found, transport)
    if deployed_outputs:
        pytest.skip("needs the local stack's development tokens")
    assert found.dev_token_url
    elsewhere = DevTokens(
        found.dev_token_url,
        channels=[{"pattern": "elsewhere*", "scopes": ["subscribe", "publish"]}],
    )
    async with open_transport(transport, found, token=elsewhere) as client:
        with pytest.raises(ClientError) as refused:
            await client.subscribe(channel)
        assert refused.value.code == "forbidden"
        with pytest.raises(ClientError) as refused:
            await client.publish(channel, "not allowed")
        assert refused.value.code == "forbidden"


async def test_an_sse_stream_outlives_its_token_with_a_fresh_one(
    found: Endpoints, channel: str, token: TokenSource, deployed_outputs: Path | None
) -> None:
    need(found, "sse")
    if deployed_outputs:
        pytest.skip("needs the local stack's development tokens")
    assert found.dev_token_url
    short = DevTokens(
        found.dev_token_url, channels=[{"pattern": channel, "scopes": ["subscribe"]}], ttl_seconds=2
    )
    async with (
        open_transport("sse", found, token=short) as subscriber,
        open_transport("sse", found, token=token) as publisher,
    ):
        subscription = await subscriber.subscribe(channel)
        before = await publisher.publish(channel, "before the token expires")
        assert await take(subscription, 1) == [before]
        async with asyncio.timeout(10):
            while subscription.stats.expirations == 0:  # noqa: ASYNC110 - a counter the client owns
                await asyncio.sleep(0.05)
        after = await publisher.publish(channel, "after it expired")
        assert await take(subscription, 1) == [after]
        assert short.issued >= 2
        print(f"stream stats across the expiry: {subscription.stats.as_dict()}")
        await subscription.close()


async def test_the_stack_never_logs_a_token(
    request: pytest.FixtureRequest,
    found: Endpoints,
    channel: str,
    deployed_outputs: Path | None,
    mode: str,
) -> None:
    from tests.e2e_support import stack_for

    if deployed_outputs:
        pytest.skip("reads the local stack's own output")
    stack = stack_for(request, mode)
    assert found.dev_token_url
    value = await a_token(DevTokens(found.dev_token_url))
    refused_value = value[:-4] + "AAAA"  # a wrongly signed one is refused, and not logged either
    async with httpx.AsyncClient(timeout=10) as http:
        # The valid token is served and the forged one refused, on every HTTP route.
        for secret, (read, published, streamed) in (
            (value, (200, 201, 200)),
            (refused_value, (401, 401, 401)),
        ):
            params = {"after": "0", "token": secret}
            for url in (found.polling_api_url, found.sse_url):
                if not url:
                    continue
                events = f"{url}/channels/{channel}/events"
                assert (await http.get(events, params=params)).status_code == read
                response = await http.post(events, params=params, json={"data": 1})
                assert response.status_code == published
            if found.sse_url:
                async with http.stream(
                    "GET", f"{found.sse_url}/channels/{channel}/stream", params=params
                ) as stream:
                    assert stream.status_code == streamed
    if found.websocket_url:
        await _websocket_logs_no_token(found.websocket_url, channel, value, refused_value)
    await asyncio.sleep(0.5)  # the stack writes $disconnect's log line after the close
    logs = stack.log_file.read_text()
    if found.websocket_url:
        assert "$disconnect" in logs  # the stack did log these requests
        assert "refused before the handshake: 401" in logs
    for secret in (value, refused_value):
        assert secret not in logs
        assert secret.split(".")[2] not in logs  # not even the signature alone


async def _websocket_logs_no_token(url: str, channel: str, value: str, refused: str) -> None:
    async with websockets.connect(with_token(url, value)) as socket:
        await socket.send(json.dumps({"action": "subscribe", "channel": channel}))
        # The event published above may be fanned out ahead of the reply (websocket_api.routes).
        while (frame := json.loads(await asyncio.wait_for(socket.recv(), 10)))["type"] == "event":
            assert frame["event"]["channel"] == channel
        assert frame["type"] == "subscribed"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(with_token(url, refused)):
            pass
