"""The local stack serves the metrics its handlers emit, as the dashboard would show them."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets

from eventlog import metrics
from local.stack import METRICS_PATH
from tests.e2e_support import LocalStack

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def with_token(url: str, token: str) -> str:
    return f"{url}?token={token}"


async def summary(http: httpx.AsyncClient, stack: LocalStack) -> dict[str, Any]:
    assert stack.endpoints.demo_url
    response = await http.get(stack.endpoints.demo_url.rstrip("/") + METRICS_PATH)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def test_a_publish_shows_up_as_fanout_posts_and_delivery_age(local_stack: LocalStack) -> None:
    found = local_stack.endpoints
    assert found.dev_token_url
    if not (found.websocket_url and found.log_api_url):
        pytest.skip("counts the WebSocket fan-out's posts: needs WebSocket and an HTTP transport")
    channel = f"metrics-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(timeout=10) as http:
        token = (await http.post(found.dev_token_url)).json()["token"]
        before = (await summary(http, local_stack)).get(metrics.WEBSOCKET, {})
        posts_before = before.get(metrics.FANOUT_POSTS.name, {}).get("sum", 0)
        async with websockets.connect(with_token(found.websocket_url, token)) as socket:
            await socket.send(json.dumps({"action": "subscribe", "channel": channel}))
            while json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] != "subscribed":
                pass
            published = await http.post(
                f"{found.log_api_url}/channels/{channel}/events",
                params={"token": token},
                json={"data": "counted"},
            )
            assert published.status_code == 201
            # Once the subscriber has the event, the fan-out's batch has ended and emitted.
            while json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] != "event":
                pass
        async with asyncio.timeout(10):
            while True:
                after = await summary(http, local_stack)
                fanout = after.get(metrics.WEBSOCKET, {})
                if fanout.get(metrics.FANOUT_POSTS.name, {}).get("sum", 0) > posts_before:
                    break
                await asyncio.sleep(0.1)
    age = fanout[metrics.DELIVERY_AGE.name]
    assert age["unit"] == "Milliseconds"
    assert age["samples"] >= 1
    assert 0 <= age["last"] < 60_000
    assert after[metrics.EVENTLOG][metrics.PUBLISH_LATENCY.name]["samples"] >= 1
