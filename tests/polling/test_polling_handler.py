"""The Lambda handler, called with HTTP API events (payload format 2.0) as AWS shapes them."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from eventlog.log import EventLog
from polling.problems import PROBLEM_CONTENT_TYPE
from tests.auth_support import ALL_ACCESS, token

EVENTS_ROUTE = "/channels/{channel}/events"


@pytest.fixture
def handler(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``polling.handler.handler`` on the moto-backed log, with an event loop as Lambda has one."""
    import eventlog.log

    # The module-level app reads the process-wide log, as it does in Lambda.
    monkeypatch.setattr(eventlog.log, "_default", log)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from polling.handler import handler

    yield handler
    asyncio.set_event_loop(None)
    loop.close()


class FakeContext:
    function_name = "polling"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def http_api_event(
    method: str,
    path: str,
    *,
    route: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    base64_body: bool = False,
    bearer: str | None = ALL_ACCESS,
) -> dict[str, Any]:
    """An event shaped like the ones the HTTP API sends to a Lambda proxy integration.

    ``bearer``: the token of the ``authorization`` header (default: one that may do anything).
    """
    route_path = route or path
    query_parameters = dict(pair.split("=", 1) for pair in query.split("&")) if query else None
    channel = path.split("/")[2] if path.startswith("/channels/") else None
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route_path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "accept": "*/*",
            "content-length": str(len(body or "")),
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
            "x-forwarded-for": "192.0.2.1",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **({"authorization": f"Bearer {bearer}"} if bearer else {}),
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": f"{method} {route_path}",
            "stage": "$default",
            "time": "28/Nov/2026:08:47:00 +0000",
            "timeEpoch": 1_795_855_620_000,
        },
        "isBase64Encoded": base64_body,
    }
    if query_parameters:
        event["queryStringParameters"] = query_parameters
    if channel:
        event["pathParameters"] = {"channel": channel}
    if body is not None:
        event["body"] = base64.b64encode(body.encode()).decode() if base64_body else body
    return event


def call(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = handler(event, FakeContext())
    assert response["isBase64Encoded"] is False, "JSON and problem bodies go out as text"
    return response


def test_publish_then_read_through_api_gateway(handler: Any) -> None:
    published = call(
        handler,
        http_api_event(
            "POST",
            "/channels/news/events",
            route=EVENTS_ROUTE,
            headers={"content-type": "application/json"},
            body=json.dumps({"data": {"headline": "hello"}}),
        ),
    )
    assert published["statusCode"] == 201
    assert published["headers"]["content-type"] == "application/json"
    event = json.loads(published["body"])
    assert (event["channel"], event["seq"], event["data"]) == ("news", 1, {"headline": "hello"})

    read = call(
        handler,
        http_api_event(
            "GET", "/channels/news/events", route=EVENTS_ROUTE, query="after=0&limit=10"
        ),
    )
    assert read["statusCode"] == 200
    body = json.loads(read["body"])
    assert body == {"channel": "news", "events": [event], "next": 1, "reset": False, "oldest": None}
    assert read["headers"]["etag"]


def test_a_base64_body_is_decoded(handler: Any) -> None:
    response = call(
        handler,
        http_api_event(
            "POST",
            "/channels/news/events",
            route=EVENTS_ROUTE,
            headers={"content-type": "application/json"},
            body='{"data": "caf\u00e9"}',
            base64_body=True,
        ),
    )

    assert response["statusCode"] == 201
    assert json.loads(response["body"])["data"] == "caf\u00e9"


def test_a_matching_etag_gets_304_with_no_body(handler: Any) -> None:
    request = http_api_event("GET", "/channels/news/events", route=EVENTS_ROUTE, query="after=0")
    etag = call(handler, request)["headers"]["etag"]

    request["headers"]["if-none-match"] = etag
    response = call(handler, request)

    assert response["statusCode"] == 304
    assert response.get("body", "") == ""
    assert response["headers"]["etag"] == etag


def test_bad_input_is_a_problem_in_plain_text(handler: Any, dynamodb: Any) -> None:
    response = call(
        handler,
        http_api_event(
            "POST",
            "/channels/news/events",
            route=EVENTS_ROUTE,
            headers={"content-type": "application/json"},
            body="{not json",
        ),
    )

    assert response["statusCode"] == 422
    assert response["headers"]["content-type"] == PROBLEM_CONTENT_TYPE
    assert json.loads(response["body"])["code"] == "invalid_data"
    assert dynamodb.scan(TableName="events")["Items"] == []


def test_a_server_fault_is_a_500_problem_a_browser_can_read(
    handler: Any, log: EventLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: Any) -> Any:
        raise RuntimeError("the table is gone")

    monkeypatch.setattr(log, "read", broken)
    response = call(
        handler,
        http_api_event(
            "GET",
            "/channels/news/events",
            route=EVENTS_ROUTE,
            query="after=0",
            headers={"origin": "https://demo.example"},
        ),
    )

    assert response["statusCode"] == 500
    assert response["headers"]["content-type"] == PROBLEM_CONTENT_TYPE
    assert response["headers"]["access-control-allow-origin"] == "*"
    assert json.loads(response["body"])["code"] == "internal_error"
    assert "the table is gone" in caplog.text, "the fault itself is logged"


def test_healthz(handler: Any) -> None:
    response = call(handler, http_api_event("GET", "/healthz"))

    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok"}


def test_the_handler_module_holds_only_the_adapter() -> None:
    import polling.handler

    public = {name for name in vars(polling.handler) if not name.startswith("_")}
    assert public == {"DEFAULT_TEXT_MIME_TYPES", "Mangum", "app", "handler"}


def test_the_token_is_taken_from_the_header_or_the_query_string(handler: Any) -> None:
    refused = call(
        handler, http_api_event("GET", "/channels/news/events", route=EVENTS_ROUTE, bearer=None)
    )
    assert refused["statusCode"] == 401
    assert refused["headers"]["content-type"] == PROBLEM_CONTENT_TYPE
    assert refused["headers"]["www-authenticate"] == 'Bearer realm="realtime"'
    assert json.loads(refused["body"])["code"] == "unauthorized"

    query = f"after=0&token={token()}"
    read = call(
        handler,
        http_api_event(
            "GET", "/channels/news/events", route=EVENTS_ROUTE, query=query, bearer=None
        ),
    )
    assert read["statusCode"] == 200
