"""The polling API's token check: every refusal, every grant, and what stays open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from auth.claims import Scope
from eventlog.config import Settings
from eventlog.log import EventLog
from polling.app import create_app
from polling.problems import PROBLEM_CONTENT_TYPE
from tests.auth_support import (
    ALL_ACCESS,
    auth_off,
    bad_tokens,
    bearer,
    good_tokens,
    verifier,
)

pytestmark = pytest.mark.anyio

EVENTS = "/channels/news/events"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Unreachable:
    """The table: a refused request must never reach it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the table was reached ({name}) by a refused request")


# One app for every refusal: a refused request never touches the log.
REFUSING_APP = create_app(
    log=EventLog(settings=Settings(events_table_name="events"), client=Unreachable()),
    auth=verifier(),
)


@pytest.fixture
async def refusing() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=REFUSING_APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://polling.test") as client:
        yield client


def request(method: str, value: str | None, *, in_query: bool = False) -> dict[str, Any]:
    """httpx arguments for a publish (POST) or read (GET) carrying ``value``."""
    kwargs: dict[str, Any] = {"method": method, "url": EVENTS}
    if method == "POST":
        kwargs["json"] = {"data": 1}
    if value is not None:
        if in_query:
            kwargs["params"] = {"token": value}
        else:
            kwargs["headers"] = bearer(value)
    return kwargs


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["code"] == code
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    if status == 403:
        assert 'error="insufficient_scope"' in challenge


METHODS: tuple[tuple[str, Scope], ...] = (("POST", "publish"), ("GET", "subscribe"))
CASES = [(method, scope, name) for method, scope in METHODS for name in bad_tokens(scope)]


@pytest.mark.parametrize(("method", "scope", "name"), CASES)
async def test_refusals(refusing: httpx.AsyncClient, method: str, scope: Scope, name: str) -> None:
    value, status, code = bad_tokens(scope)[name]
    assert_refused(await refusing.request(**request(method, value)), status, code)
    if value is not None:  # the same, sent as a browser sends it
        response = await refusing.request(**request(method, value, in_query=True))
        assert_refused(response, status, code)


async def test_no_token_is_refused_before_a_bad_channel_or_cursor(
    refusing: httpx.AsyncClient,
) -> None:
    for url in ("/channels/bad%20name/events", "/channels/news/events?after=-1&limit=0"):
        response = await refusing.get(url)
        assert_refused(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == 'Bearer realm="realtime"'
    response = await refusing.post(
        "/channels/news/events", content=b"not json", headers={"Content-Type": "text/plain"}
    )
    assert_refused(response, 401, "unauthorized")
    response = await refusing.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_refused(response, 401, "unauthorized")
    assert "Bearer <token>" in response.json()["detail"]


async def test_health_documentation_and_preflight_need_no_token(
    refusing: httpx.AsyncClient,
) -> None:
    assert (await refusing.get("/healthz")).status_code == 200
    assert (await refusing.get("/docs")).status_code == 200
    preflight = await refusing.options(
        EVENTS,
        headers={
            "Origin": "http://demo.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


async def test_the_openapi_schema_documents_both_ways_to_send_the_token(
    refusing: httpx.AsyncClient,
) -> None:
    schema = (await refusing.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["queryToken"]["in"] == "query"
    assert schemes["queryToken"]["name"] == "token"
    operations = schema["paths"]["/channels/{channel}/events"]
    for method in ("get", "post"):
        assert {"bearer": []} in operations[method]["security"]
        assert {"401", "403"} <= set(operations[method]["responses"])
        names = [param["name"] for param in operations[method].get("parameters", [])]
        assert "token" not in names  # a security scheme, not a parameter
    assert "security" not in schema["paths"]["/healthz"]["get"]


@pytest.mark.parametrize("name", ["exact", "prefix", "everything"])
async def test_grants(log: EventLog, name: str) -> None:
    app: FastAPI = create_app(log=log, auth=verifier())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://polling.test") as client:
        published = await client.post(
            EVENTS, json={"data": name}, headers=bearer(good_tokens("publish")[name])
        )
        assert published.status_code == 201, published.text
        read = await client.get(
            EVENTS, params={"after": 0, "token": good_tokens("subscribe")[name]}
        )
        assert read.status_code == 200, read.text
        assert [event["data"] for event in read.json()["events"]] == [name]


async def test_a_publish_token_cannot_read_and_a_read_token_cannot_publish(log: EventLog) -> None:
    app = create_app(log=log, auth=verifier())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://polling.test") as client:
        publisher = bearer(good_tokens("publish")["exact"])
        reader = bearer(good_tokens("subscribe")["exact"])
        assert (await client.post(EVENTS, json={"data": 1}, headers=publisher)).status_code == 201
        assert_refused(await client.get(EVENTS, headers=publisher), 403, "forbidden")
        assert_refused(
            await client.post(EVENTS, json={"data": 2}, headers=reader), 403, "forbidden"
        )
        response = await client.get(EVENTS, params={"after": 0}, headers=reader)
        assert [event["data"] for event in response.json()["events"]] == [1]
        everything = await client.get(EVENTS, params={"after": 0}, headers=bearer(ALL_ACCESS))
        assert everything.json() == response.json()


async def test_with_auth_off_no_token_is_needed(log: EventLog) -> None:
    transport = httpx.ASGITransport(app=create_app(log=log, auth=auth_off()))
    async with httpx.AsyncClient(transport=transport, base_url="http://polling.test") as client:
        assert (await client.post(EVENTS, json={"data": 1})).status_code == 201
        assert (await client.get(EVENTS, params={"after": 0})).json()["events"][0]["seq"] == 1
