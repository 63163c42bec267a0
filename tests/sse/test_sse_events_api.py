"""The SSE service's publish and page read: the polling API's contract, from the same code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from auth.claims import grant
from eventlog.config import MAX_BODY_BYTES, MAX_READ_LIMIT
from eventlog.log import EventLog
from eventlog.problems import PROBLEM_CONTENT_TYPE
from sse_service.app import create_app
from sse_service.settings import ServiceSettings
from tests.auth_support import ALL_ACCESS, bad_tokens, bearer, token, verifier

pytestmark = pytest.mark.anyio

EVENTS = "/channels/news/events"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(log: EventLog) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(log=log, settings=ServiceSettings(), auth=verifier())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sse.test") as client:
        yield client


def problem_code(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    return response.json()["code"]


async def test_publish_then_read_a_page(client: httpx.AsyncClient) -> None:
    auth = bearer(ALL_ACCESS)
    for n in range(3):
        reply = await client.post(EVENTS, json={"data": {"n": n}}, headers=auth)
        assert reply.status_code == 201
        assert reply.json()["seq"] == n + 1
    page = await client.get(EVENTS, params={"after": 1, "limit": 1}, headers=auth)
    assert page.status_code == 200
    body = page.json()
    assert [event["data"] for event in body["events"]] == [{"n": 1}]
    assert body["next"] == 2
    assert body["reset"] is False
    unchanged = await client.get(
        EVENTS,
        params={"after": 1, "limit": 1},
        headers={**auth, "If-None-Match": page.headers["etag"]},
    )
    assert unchanged.status_code == 304


async def test_a_read_without_a_cursor_starts_at_the_head(client: httpx.AsyncClient) -> None:
    auth = bearer(ALL_ACCESS)
    await client.post(EVENTS, json={"data": 1}, headers=auth)
    body = (await client.get(EVENTS, headers=auth)).json()
    assert (body["events"], body["next"]) == ([], 1)


@pytest.mark.parametrize(
    ("request_args", "status", "code"),
    [
        ({"method": "POST", "content": b'{"data": 1}'}, 415, "unsupported_media_type"),
        ({"method": "POST", "json": {"data": 1, "extra": 2}}, 422, "invalid_data"),
        ({"method": "POST", "json": {"data": "x" * MAX_BODY_BYTES}}, 413, "event_too_large"),
        ({"method": "GET", "params": {"after": "-1"}}, 400, "invalid_cursor"),
        ({"method": "GET", "params": {"limit": MAX_READ_LIMIT + 1}}, 400, "invalid_limit"),
        ({"method": "GET", "params": {"wait": "20"}}, 400, "invalid_wait"),
    ],
)
async def test_bad_input_is_a_problem(
    client: httpx.AsyncClient, request_args: dict[str, Any], status: int, code: str
) -> None:
    args = dict(request_args)
    reply = await client.request(args.pop("method"), EVENTS, headers=bearer(ALL_ACCESS), **args)
    assert reply.status_code == status, reply.text
    assert problem_code(reply) == code


@pytest.mark.parametrize("name", list(bad_tokens("publish")))
async def test_publish_needs_the_publish_scope(client: httpx.AsyncClient, name: str) -> None:
    value, status, code = bad_tokens("publish")[name]
    headers = {} if value is None else bearer(value)
    reply = await client.post(EVENTS, json={"data": 1}, headers=headers)
    assert (reply.status_code, problem_code(reply)) == (status, code)


async def test_reading_needs_the_subscribe_scope(client: httpx.AsyncClient) -> None:
    publisher = bearer(token(grant("news", "publish")))
    reply = await client.get(EVENTS, headers=publisher)
    assert (reply.status_code, problem_code(reply)) == (403, "forbidden")


async def test_a_browser_on_another_origin_may_publish(client: httpx.AsyncClient) -> None:
    reply = await client.options(
        EVENTS,
        headers={
            "Origin": "https://page.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert reply.status_code == 200
    assert "POST" in reply.headers["access-control-allow-methods"]
