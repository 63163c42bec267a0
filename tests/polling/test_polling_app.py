"""The polling app over HTTP (httpx on the ASGI app), on the event log in moto."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from starlette.routing import Route

from eventlog.config import (
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    MAX_LONG_POLL_SECONDS,
    MAX_READ_LIMIT,
    Settings,
)
from eventlog.log import EventLog, ReadResult
from polling.app import create_app
from polling.config import CORS_ALLOW_HEADERS, ROUTES, PollingSettings
from polling.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX
from tests.auth_support import ALL_ACCESS, bearer

pytestmark = pytest.mark.anyio

EVENTS = "/channels/news/events"
READ_KEYS = {"channel", "events", "next", "reset", "oldest"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_for(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """A client of ``app`` whose token may do everything (auth has its own tests)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(
        transport=transport, base_url="http://polling.test", headers=bearer(ALL_ACCESS)
    )


@pytest.fixture
async def client(log: EventLog) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(log=log)) as client:
        yield client


class Unreachable:
    """A DynamoDB client for requests that must be answered without the table."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the table was reached ({name})")


def offline_log() -> EventLog:
    return EventLog(settings=Settings(events_table_name="events"), client=Unreachable())


@pytest.fixture
async def offline() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(log=offline_log())) as client:
        yield client


@pytest.fixture
def table(dynamodb: Any, events_table: str) -> Any:
    """The DynamoDB client, once the events table exists."""
    return dynamodb


def table_items(table: Any) -> list[Any]:
    items = table.scan(TableName="events", ConsistentRead=True)["Items"]
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


def assert_problem(
    response: httpx.Response, *, status: int, code: str, case: object = None
) -> dict[str, Any]:
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == PROBLEM_TYPE_PREFIX + code
    assert problem["title"]
    assert problem["detail"]
    return problem


async def publish(client: httpx.AsyncClient, data: Any, channel: str = "news") -> dict[str, Any]:
    response = await client.post(f"/channels/{channel}/events", json={"data": data})
    assert response.status_code == 201, response.text
    event: dict[str, Any] = response.json()
    return event


# --- publish and read -------------------------------------------------------------------------


async def test_publish_returns_the_event_with_its_seq(client: httpx.AsyncClient) -> None:
    response = await client.post(EVENTS, json={"data": {"headline": "hello"}})

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    event = response.json()
    assert set(event) == {"channel", "seq", "data", "time"}
    assert event["channel"] == "news"
    assert event["seq"] == 1
    assert event["data"] == {"headline": "hello"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
    assert (await publish(client, None))["seq"] == 2  # null is a JSON value too


async def test_read_after_zero_returns_everything_retained(client: httpx.AsyncClient) -> None:
    for n in range(3):
        await publish(client, n)

    response = await client.get(EVENTS, params={"after": 0})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == READ_KEYS
    assert body["channel"] == "news"
    assert [event["seq"] for event in body["events"]] == [1, 2, 3]
    assert [event["data"] for event in body["events"]] == [0, 1, 2]
    assert body["next"] == 3
    assert body["reset"] is False
    assert body["oldest"] is None


async def test_limit_pages_through_and_next_follows_on(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await publish(client, n)

    seqs: list[int] = []
    cursor = 0
    for _ in range(3):
        body = (await client.get(EVENTS, params={"after": cursor, "limit": 2})).json()
        seqs += [event["seq"] for event in body["events"]]
        cursor = body["next"]

    assert seqs == [1, 2, 3, 4, 5]
    assert cursor == 5


async def test_next_is_the_given_cursor_when_nothing_is_new(client: httpx.AsyncClient) -> None:
    await publish(client, "only")

    body = (await client.get(EVENTS, params={"after": 1})).json()

    assert body == {"channel": "news", "events": [], "next": 1, "reset": False, "oldest": None}


async def test_without_a_cursor_the_read_starts_at_the_head(client: httpx.AsyncClient) -> None:
    await publish(client, "history")
    await publish(client, "more history")

    live = (await client.get(EVENTS)).json()
    assert live["events"] == []
    assert live["next"] == 2

    await publish(client, "new")
    body = (await client.get(EVENTS, params={"after": live["next"]})).json()
    assert [event["data"] for event in body["events"]] == ["new"]


async def test_other_channels_are_separate(client: httpx.AsyncClient) -> None:
    await publish(client, "a", channel="a.b-c_D")
    await publish(client, "news")

    body = (await client.get("/channels/a.b-c_D/events", params={"after": 0})).json()

    assert [(event["channel"], event["seq"]) for event in body["events"]] == [("a.b-c_D", 1)]


async def test_a_cursor_older_than_the_history_is_reset_to_the_oldest(table: Any) -> None:
    now = [1_000_000.0]
    log = EventLog(
        settings=Settings(events_table_name="events", retention_seconds=10),
        client=table,
        clock=lambda: now[0],
    )
    async with client_for(create_app(log=log)) as client:
        await publish(client, "expires")
        await publish(client, "expires too")
        now[0] += 20
        await publish(client, "kept")
        now[0] += 5  # the first two have expired; TTL has not deleted them yet

        body = (await client.get(EVENTS, params={"after": 0})).json()
        assert body["reset"] is True
        assert body["oldest"] == 3
        assert [event["data"] for event in body["events"]] == ["kept"]
        assert body["next"] == 3

        now[0] += 20  # now nothing is retained: continue after the head
        body = (await client.get(EVENTS, params={"after": 1})).json()
        assert body == {"channel": "news", "events": [], "next": 3, "reset": True, "oldest": 4}


async def test_a_cursor_ahead_of_the_head_is_reset(client: httpx.AsyncClient) -> None:
    await publish(client, "one")

    body = (await client.get(EVENTS, params={"after": 50})).json()

    assert body["reset"] is True
    assert body["oldest"] == 1
    assert [event["seq"] for event in body["events"]] == [1]


# --- ETag and 304 -----------------------------------------------------------------------------


async def test_every_200_has_an_etag_and_a_match_gets_304(client: httpx.AsyncClient) -> None:
    await publish(client, "one")
    first = await client.get(EVENTS, params={"after": 0})
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert first.headers["cache-control"] == "no-cache"

    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(EVENTS, params={"after": 0}, headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b""
        assert again.headers["etag"] == etag

    other = await client.get(EVENTS, params={"after": 0}, headers={"If-None-Match": '"other"'})
    assert other.status_code == 200
    assert other.headers["etag"] == etag

    await publish(client, "two")
    changed = await client.get(EVENTS, params={"after": 0}, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert len(changed.json()["events"]) == 2


async def test_an_empty_poll_revalidates_to_304(client: httpx.AsyncClient) -> None:
    empty = await client.get(EVENTS, params={"after": 0})
    assert empty.json()["events"] == []

    again = await client.get(
        EVENTS, params={"after": 0}, headers={"If-None-Match": empty.headers["etag"]}
    )

    assert again.status_code == 304


async def test_healthz(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["etag"]


# --- long polling -----------------------------------------------------------------------------


class RecordingLog(EventLog):
    """The moto-backed log, recording each read and each publish in one ordered list."""

    def __init__(self, *, client: Any) -> None:
        super().__init__(settings=Settings(events_table_name="events"), client=client)
        self.calls: list[str] = []
        self.first_read = threading.Event()

    def read(self, channel: str, after: int, limit: int = MAX_READ_LIMIT) -> ReadResult:
        self.calls.append("read")
        self.first_read.set()
        return super().read(channel, after, limit)


def publish_later(log: RecordingLog, *, delay: float) -> threading.Thread:
    def run() -> None:
        # Only once the request is waiting: the event must arrive during the wait.
        log.first_read.wait(timeout=10)
        time.sleep(delay)
        log.publish("news", "late")
        log.calls.append("published")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def test_a_long_poll_returns_as_soon_as_an_event_arrives(table: Any) -> None:
    log = RecordingLog(client=table)
    async with client_for(create_app(log=log)) as client:
        wait = 20
        publisher = publish_later(log, delay=0.5)
        started = time.monotonic()
        response = await client.get(EVENTS, params={"after": 0, "wait": wait})
        elapsed = time.monotonic() - started
        publisher.join()

    body = response.json()
    assert [event["data"] for event in body["events"]] == ["late"]
    assert body["next"] == 1
    reads_before = log.calls.index("published")
    assert reads_before >= 2, "the request read, found nothing, and kept waiting"
    # It answered at the first read that began after the publish (or one already under way).
    assert log.calls[reads_before + 1 :] in ([], ["read"])
    print(f"long poll: event published after ~0.5 s, answered after {elapsed:.2f} s")


async def test_a_long_poll_without_a_cursor_waits_for_the_next_event(table: Any) -> None:
    log = RecordingLog(client=table)
    log.publish("news", "history")
    async with client_for(create_app(log=log)) as client:
        publisher = publish_later(log, delay=0.2)
        response = await client.get(EVENTS, params={"wait": 10})
        publisher.join()

    assert [event["data"] for event in response.json()["events"]] == ["late"]


async def test_a_long_poll_returns_empty_when_the_wait_runs_out(table: Any) -> None:
    log = RecordingLog(client=table)
    async with client_for(create_app(log=log)) as client:
        started = time.monotonic()
        response = await client.get(EVENTS, params={"after": 0, "wait": 1})
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json() == {
        "channel": "news",
        "events": [],
        "next": 0,
        "reset": False,
        "oldest": None,
    }
    assert len(log.calls) >= 3, "it read again during the wait"
    print(f"empty long poll (wait=1): {len(log.calls)} reads in {elapsed:.2f} s")


async def test_a_waiting_request_does_not_block_the_event_loop(client: httpx.AsyncClient) -> None:
    waiting = asyncio.ensure_future(client.get(EVENTS, params={"after": 0, "wait": 1}))
    await asyncio.sleep(0.05)

    health = await client.get("/healthz")

    assert health.status_code == 200
    assert not waiting.done()
    assert (await waiting).json()["events"] == []


async def test_event_log_calls_run_outside_the_event_loop(table: Any) -> None:
    released = threading.Event()

    class SlowLog(EventLog):
        def head(self, channel: str) -> int:
            # Blocks its thread until the test, on the event loop, answers another request.
            assert released.wait(timeout=10), "the event loop was blocked"
            return super().head(channel)

    log = SlowLog(settings=Settings(events_table_name="events"), client=table)
    async with client_for(create_app(log=log)) as client:
        slow = asyncio.ensure_future(client.get(EVENTS))
        await asyncio.sleep(0.05)
        health = await client.get("/healthz")
        released.set()
        assert health.status_code == 200
        assert (await slow).status_code == 200


# --- bad input: a 4xx problem, and nothing written --------------------------------------------


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> None:
    await publish(client, "existing")


@pytest.fixture
def unchanged(table: Any, seeded: None) -> Any:
    """The table after one publish; ``check()`` asserts that it still holds exactly that."""

    class Snapshot:
        def __init__(self) -> None:
            self.before = table_items(table)

        def check(self) -> None:
            assert table_items(table) == self.before

    return Snapshot()


# One test per kind of bad input; each tries every variant against the same seeded table.

JSON = {"Content-Type": "application/json"}


async def test_an_invalid_channel_is_400(client: httpx.AsyncClient, unchanged: Any) -> None:
    # %2E is a dot that reaches the server: a browser would have removed a bare "." segment.
    for channel in ("bad%20channel", "bad!", "x" * 65, "caf%C3%A9", "a%3Fb", "%2E", "%2E%2E"):
        path = f"/channels/{channel}/events"
        response = await client.post(path, json={"data": 1})
        assert_problem(response, status=400, code="invalid_channel", case=channel)
        assert_problem(await client.get(path), status=400, code="invalid_channel", case=channel)
    unchanged.check()


async def test_a_bad_cursor_is_400(client: httpx.AsyncClient, unchanged: Any) -> None:
    for after in ("-1", "abc", "1.5", "", "0x10", "1e3", " 1", "9" * 39, "1" + "0" * 38):
        response = await client.get(EVENTS, params={"after": after})
        assert_problem(response, status=400, code="invalid_cursor", case=after)
    unchanged.check()


async def test_a_limit_out_of_range_is_400(client: httpx.AsyncClient, unchanged: Any) -> None:
    for limit in ("0", str(MAX_READ_LIMIT + 1), "-1", "ten", "", "2.0", "1000"):
        response = await client.get(EVENTS, params={"after": 0, "limit": limit})
        assert_problem(response, status=400, code="invalid_limit", case=limit)
    unchanged.check()


async def test_a_wait_out_of_range_is_400(client: httpx.AsyncClient, unchanged: Any) -> None:
    for wait in (str(MAX_LONG_POLL_SECONDS + 1), "30", "-1", "0.5", "soon", ""):
        response = await client.get(EVENTS, params={"after": 0, "wait": wait})
        assert_problem(response, status=400, code="invalid_wait", case=wait)
    unchanged.check()


async def test_a_non_json_body_is_422(client: httpx.AsyncClient, unchanged: Any) -> None:
    too_deep = b"[" * 100_000 + b"]" * 100_000  # a RecursionError in the parser, not a 500
    for body in (b"", b"{", b"not json", b'{"data": 1,}', b"\xff\xfe\xfa", too_deep):
        response = await client.post(EVENTS, content=body, headers=JSON)
        assert_problem(response, status=422, code="invalid_data", case=body[:20])
    unchanged.check()


async def test_data_without_a_utf8_encoding_is_422(
    client: httpx.AsyncClient, unchanged: Any
) -> None:
    # Valid JSON (an escaped lone surrogate), but no transport could send it as UTF-8.
    response = await client.post(EVENTS, content=b'{"data": "\\ud800"}', headers=JSON)
    assert_problem(response, status=422, code="invalid_data")
    unchanged.check()


async def test_a_body_without_data_is_422(client: httpx.AsyncClient, unchanged: Any) -> None:
    for body in ('{"date": 1}', "{}", "[1]", '"data"', "null", '{"data": 1, "extra": 2}'):
        response = await client.post(EVENTS, content=body, headers=JSON)
        problem = assert_problem(response, status=422, code="invalid_data", case=body)
        assert '{"data": <any JSON value>}' in problem["detail"]
    unchanged.check()


async def test_data_that_is_not_json_is_422(client: httpx.AsyncClient, unchanged: Any) -> None:
    for value in ("NaN", "Infinity", "-Infinity", "1e999"):
        response = await client.post(EVENTS, content=f'{{"data": {value}}}', headers=JSON)
        assert_problem(response, status=422, code="invalid_data", case=value)
    unchanged.check()


async def test_an_event_over_the_size_limit_is_413(
    client: httpx.AsyncClient, unchanged: Any
) -> None:
    response = await client.post(EVENTS, json={"data": "x" * MAX_EVENT_BYTES})
    problem = assert_problem(response, status=413, code="event_too_large")
    assert str(MAX_EVENT_BYTES) in problem["detail"]
    unchanged.check()


async def test_a_body_over_the_read_limit_is_413_unread(
    client: httpx.AsyncClient, unchanged: Any
) -> None:
    body = b'{"data": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = await client.post(EVENTS, content=body, headers=JSON)
    assert_problem(response, status=413, code="event_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(3):
            yield b"x" * (MAX_BODY_BYTES // 2)

    response = await client.post(EVENTS, content=chunks(), headers=JSON)
    assert_problem(response, status=413, code="event_too_large")
    unchanged.check()


async def test_a_body_that_is_not_declared_json_is_415(
    client: httpx.AsyncClient, unchanged: Any
) -> None:
    for content_type in ("", "text/plain", "application/x-www-form-urlencoded", "text/json"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = await client.post(EVENTS, content=b'{"data": 1}', headers=headers)
        assert_problem(response, status=415, code="unsupported_media_type", case=content_type)
    unchanged.check()


async def test_json_media_types_are_accepted(client: httpx.AsyncClient) -> None:
    for n, content_type in enumerate(
        ("application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"), start=1
    ):
        headers = {"Content-Type": content_type}
        response = await client.post(EVENTS, content=b'{"data": 1}', headers=headers)
        assert response.status_code == 201, content_type
        assert response.json()["seq"] == n


# --- other errors are problems too ------------------------------------------------------------


async def test_request_validation_errors_become_problems() -> None:
    app = create_app(log=offline_log())

    @app.get("/typed")
    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    async with client_for(app) as client:
        response = await client.get("/typed", params={"n": "seven"})

    problem = assert_problem(response, status=422, code="validation_error")
    assert problem["errors"][0]["loc"] == ["query", "n"]
    assert "seven" not in response.text, "the rejected input is not echoed"


async def test_unknown_routes_and_methods_are_problems(offline: httpx.AsyncClient) -> None:
    assert_problem(await offline.get("/nowhere"), status=404, code="not_found")
    response = await offline.put(EVENTS, json={"data": 1})
    assert_problem(response, status=405, code="method_not_allowed")
    assert "POST" in response.headers["allow"]


def throttling_error(operation: str) -> Exception:
    from botocore.exceptions import ClientError

    error: Exception = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        operation,
    )
    return error


async def test_dynamodb_throttling_is_429_with_retry_after() -> None:
    class ThrottledLog(EventLog):
        def publish(self, channel: str, data: Any) -> Any:
            raise throttling_error("TransactWriteItems")

        def read(self, channel: str, after: int, limit: int = MAX_READ_LIMIT) -> ReadResult:
            raise throttling_error("Query")

    log = ThrottledLog(settings=Settings(events_table_name="events"), client=Unreachable())
    async with client_for(create_app(log=log)) as client:
        for response in (
            await client.post(EVENTS, json={"data": 1}),
            await client.get(EVENTS, params={"after": 0}),
        ):
            assert_problem(response, status=429, code="throttled")
            assert response.headers["retry-after"] == "1"


async def test_an_unexpected_failure_is_a_500_problem_without_details() -> None:
    class BrokenLog(EventLog):
        def read(self, channel: str, after: int, limit: int = MAX_READ_LIMIT) -> ReadResult:
            raise RuntimeError("secret internals")

    log = BrokenLog(settings=Settings(events_table_name="events"), client=Unreachable())
    async with client_for(create_app(log=log), raise_app_exceptions=False) as client:
        response = await client.get(
            EVENTS, params={"after": 0}, headers={"Origin": "http://demo.test"}
        )

    assert_problem(response, status=500, code="internal_error")
    assert "secret" not in response.text
    # A browser can read it: without CORS headers it would see an opaque network error.
    assert response.headers["access-control-allow-origin"] == "*"


# --- the auth seam ----------------------------------------------------------------------------


def refuse() -> None:
    raise HTTPException(status_code=401, detail="no token", headers={"WWW-Authenticate": "Bearer"})


async def test_guards_run_before_anything_is_parsed_or_written(log: EventLog, table: Any) -> None:
    app = create_app(
        log=log, publish_dependencies=[Depends(refuse)], read_dependencies=[Depends(refuse)]
    )
    before = table_items(table)
    async with client_for(app) as client:
        responses = [
            await client.post(EVENTS, json={"data": 1}),
            await client.post(EVENTS, content=b"not json", headers=JSON),
            await client.get(EVENTS, params={"after": "not a cursor"}),
        ]
        health = await client.get("/healthz")

    for response in responses:
        assert_problem(response, status=401, code="http_401")
        assert response.headers["www-authenticate"] == "Bearer"
    assert table_items(table) == before
    assert health.status_code == 200


# --- OpenAPI, routes and CORS -----------------------------------------------------------------


async def test_the_app_serves_exactly_the_routes_the_api_routes() -> None:
    app = create_app(log=offline_log())
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == set(ROUTES)


async def test_the_openapi_schema_describes_the_contract(offline: httpx.AsyncClient) -> None:
    schema = (await offline.get("/openapi.json")).json()

    operations = schema["paths"]["/channels/{channel}/events"]
    params = {param["name"]: param["schema"] for param in operations["get"]["parameters"]}
    assert params["after"] == {"type": "integer", "minimum": 0, "title": "After"}
    assert params["limit"]["maximum"] == MAX_READ_LIMIT
    assert params["wait"]["maximum"] == MAX_LONG_POLL_SECONDS
    assert PROBLEM_CONTENT_TYPE in operations["post"]["responses"]["413"]["content"]
    assert PROBLEM_CONTENT_TYPE in operations["get"]["responses"]["422"]["content"]
    assert "ETag" in operations["get"]["responses"]["200"]["headers"]
    body_schema = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["required"] == ["data"]
    assert (await offline.get("/docs")).status_code == 200


async def test_cors_lets_the_demo_page_read_the_etag(offline: httpx.AsyncClient) -> None:
    origin = {"Origin": "http://demo.test"}
    preflight = await offline.options(
        EVENTS,
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, if-none-match",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"

    response = await offline.get("/healthz", headers=origin)
    assert response.headers["access-control-allow-origin"] == "*"
    assert "ETag" in response.headers["access-control-expose-headers"]


async def test_cors_origins_are_configurable() -> None:
    settings = PollingSettings(cors_allow_origins=("https://demo.example",))
    async with client_for(create_app(log=offline_log(), settings=settings)) as client:
        allowed = await client.get("/healthz", headers={"Origin": "https://demo.example"})
        foreign = await client.get("/healthz", headers={"Origin": "https://evil.example"})

    assert allowed.headers["access-control-allow-origin"] == "https://demo.example"
    assert "access-control-allow-origin" not in foreign.headers


def test_settings_read_the_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example ,")
    assert PollingSettings.from_env().cors_allow_origins == (
        "https://a.example",
        "https://b.example",
    )
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "")
    assert PollingSettings.from_env().cors_allow_origins == ("*",)
    assert set(CORS_ALLOW_HEADERS) >= {"Authorization", "If-None-Match"}


def test_the_module_level_app_imports_without_aws_or_pyjwt() -> None:
    import subprocess
    import sys

    from polling.snapstart import FIRST_USE_IMPORTS

    code = (
        "import polling.handler, polling.app, sys; "
        f"print(sorted(name for name in {FIRST_USE_IMPORTS!r} if name in sys.modules))"
    )
    env_path = ":".join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PYTHONPATH": env_path,
            "PATH": "/usr/bin:/bin",
            # As deployed: the key is read from Secrets Manager on the first request.
            "AUTH_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:auth-AbCdEf",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    # boto3 and PyJWT are imported by the first request that needs them (or the snapshot).
    assert result.stdout.strip() == "[]"
