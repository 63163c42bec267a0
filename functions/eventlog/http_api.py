"""The log's HTTP API, publish and page read: one implementation for every HTTP transport.

``POST /channels/{channel}/events`` with ``{"data": <json>}`` -> 201 and the Event;
``GET /channels/{channel}/events?after=N&limit=L`` -> 200 with ``{"channel", "events",
"next", "reset", "oldest"}``, a strong ``ETag`` and ``Cache-Control: no-cache`` (304 on a
matching ``If-None-Match``). Without ``after`` the read starts at the channel's head.

Two transports serve it. The polling API does, because reading is what it is (it adds long
polling, ``wait``, and an OpenAPI schema with FastAPI). The SSE service does too, so that
its clients publish and fill gaps through their own service, and a deployment without the
polling transport still has a publish path and a backfill path (docs/ARCHITECTURE.md,
"Publish and backfill without polling"). The WebSocket transport publishes over its socket.

Both import this module, so they cannot drift: the same parsing, limits, auth check
(``authorize``: the token first, then the channel, then ``Claims.check``) and problem
bodies. Starlette only: the polling API wraps these calls in its FastAPI routes, and the
SSE service mounts ``event_routes``. The event log's calls are blocking boto3 calls; they
run in the threadpool, never on the event loop. Both log one line per request the same way
(``RequestLog``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from auth.claims import Claims, Scope
from auth.config import TOKEN_QUERY_PARAMETER
from auth.verifier import Verifier, token_from
from eventlog.config import EVENTS_PATH, MAX_BODY_BYTES, MAX_READ_LIMIT
from eventlog.errors import (
    EventLogError,
    EventTooLarge,
    InvalidData,
    InvalidLimit,
    Throttled,
    is_throttling,
)
from eventlog.events import encode_json, parse_cursor, validate_channel, validate_limit
from eventlog.log import EventLog, ReadResult
from eventlog.structured_logs import Transport, fields

logger = logging.getLogger(__name__)

T = TypeVar("T")

ReadOnce = Callable[[], Awaitable[ReadResult]]
Wait = Callable[[ReadOnce], Awaitable[ReadResult]]
"""How a read waits for events: long polling (the polling API) or not at all."""


class UnsupportedMediaType(EventLogError):
    code = "unsupported_media_type"
    http_status = 415


class InvalidWait(EventLogError):
    code = "invalid_wait"


# --- Parsing --------------------------------------------------------------------------------


def parse_limit(raw: object) -> int:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 3:
        return validate_limit(int(raw))
    if isinstance(raw, int):
        return validate_limit(raw)
    raise InvalidLimit(f"limit must be an integer from 1 to {MAX_READ_LIMIT} (got {raw!r:.40})")


def is_json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_body(request: Request) -> bytes:
    """The request body, refused unread past ``MAX_BODY_BYTES``."""
    too_large = f"the body is over {MAX_BODY_BYTES} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise EventTooLarge(too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise EventTooLarge(too_large)
    return bytes(body)


def parse_publish_body(body: bytes) -> Any:
    """The ``data`` of a publish body, which must be exactly ``{"data": <any JSON value>}``."""
    shape = 'the body must be a JSON object {"data": <any JSON value>}'
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidData(f"the body is not JSON ({exc}); {shape}") from None
    if not isinstance(obj, dict) or "data" not in obj:
        raise InvalidData(shape)
    unknown = sorted(set(obj) - {"data"})
    if unknown:
        raise InvalidData(f"unknown member(s) {', '.join(map(repr, unknown))}; {shape}")
    return obj["data"]


# --- Answers --------------------------------------------------------------------------------


async def blocking(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking event log call in the threadpool."""
    try:
        return await run_in_threadpool(func, *args)
    except Exception as exc:
        if is_throttling(exc):
            raise Throttled("the event log is over capacity; retry shortly") from exc
        raise


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter.
    if not if_none_match:
        return False
    candidates = (tag.strip() for tag in if_none_match.split(","))
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in candidates)


def json_response(request: Request, payload: dict[str, Any]) -> Response:
    """200 with a strong ETag of the exact body, or 304 when the client already has it."""
    body = encode_json(payload).encode()
    etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=HTTPStatus.NOT_MODIFIED, headers=headers)
    return Response(body, headers=headers, media_type="application/json")


def read_payload(result: ReadResult) -> dict[str, Any]:
    return {
        "channel": result.channel,
        "events": [event.to_dict() for event in result.events],
        "next": result.next,
        "reset": result.reset,
        "oldest": result.oldest,
    }


# --- The calls ------------------------------------------------------------------------------


def authorize(verifier: Verifier, request: Request, scope: Scope) -> Claims:
    """The request's claims, if they grant ``scope`` on the path's channel; else 401/403.

    The token first: a caller without a valid one learns nothing else, not even that its
    channel name is malformed. Blocking (the first verification reads Secrets Manager).
    """
    token = token_from(
        authorization=request.headers.get("authorization"),
        query=request.query_params.get(TOKEN_QUERY_PARAMETER),
    )
    claims = verifier.verify(token)
    channel = validate_channel(request.path_params.get("channel"))
    claims.check(channel=channel, scope=scope, now=verifier.now())
    return claims


async def publish(request: Request, *, log: EventLog, channel: str) -> Response:
    """Append the body's ``data`` to the channel; 201 with the event and its ``seq``."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise UnsupportedMediaType("the body must be JSON, sent as Content-Type: application/json")
    data = parse_publish_body(await read_body(request))
    event = await blocking(log.publish, channel, data)
    request.state.seq = event.seq
    return Response(event.encode(), status_code=HTTPStatus.CREATED, media_type="application/json")


async def read(
    request: Request,
    *,
    log: EventLog,
    channel: str,
    after: int | None,
    limit: int,
    wait: Wait | None = None,
) -> Response:
    """The events after the cursor (the head when None), oldest first; ``wait`` for some."""
    cursor = after if after is not None else await blocking(log.head, channel)

    def read_once() -> Awaitable[ReadResult]:
        return blocking(log.read, channel, cursor, limit)

    result = await (read_once() if wait is None else wait(read_once))
    request.state.seq = result.next
    if not (result.events or result.reset):
        request.state.outcome = "empty"
    return json_response(request, read_payload(result))


def event_routes(*, log: Callable[[], EventLog], verifier: Verifier) -> list[Route]:
    """``POST`` and ``GET`` on ``EVENTS_PATH``, for a Starlette app other than the polling API.

    The read answers at once: ``wait`` (long polling) is the polling API's, and a request
    that asks for it is refused rather than answered sooner than it expects.
    """

    async def checked(request: Request, scope: Scope) -> str:
        # For RequestLog: FastAPI's router names only its own routes in the ASGI scope.
        request.state.route = EVENTS_PATH
        await run_in_threadpool(authorize, verifier, request, scope)
        return validate_channel(request.path_params["channel"])

    async def publish_route(request: Request) -> Response:
        channel = await checked(request, "publish")
        return await publish(request, log=log(), channel=channel)

    async def read_route(request: Request) -> Response:
        channel = await checked(request, "subscribe")
        query = request.query_params
        if query.get("wait", "0") != "0":
            raise InvalidWait(
                "this server reads a page and answers at once: long polling (wait) is the "
                "polling API's"
            )
        after = parse_cursor(query["after"]) if "after" in query else None
        limit = parse_limit(query.get("limit", str(MAX_READ_LIMIT)))
        return await read(request, log=log(), channel=channel, after=after, limit=limit)

    return [
        Route(EVENTS_PATH, publish_route, methods=["POST"]),
        Route(EVENTS_PATH, read_route, methods=["GET"]),
    ]


# --- The request log ---------------------------------------------------------------------


class RequestLog:
    """One log line per request: route, channel, seq, status and the request's id.

    Never the URL or the headers: browsers send the token in the query string. The route
    is the path template, so the line names the channel in a field of its own. The id is
    API Gateway's ``requestId`` behind the HTTP API (Mangum hands its event over in the
    scope), else the ``X-Amzn-Trace-Id`` an ALB adds to every request it forwards
    (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-request-tracing.html),
    so a line can be found from either side. ``quiet_paths`` are not logged: a load
    balancer's health checks would be most of the lines.
    """

    def __init__(
        self, app: ASGIApp, *, transport: Transport, quiet_paths: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.transport = transport
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.quiet_paths:
            await self._logged(scope, receive, send)
        else:
            await self.app(scope, receive, send)  # lifespan, or a quiet path: nothing to log

    async def _logged(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        status = 500  # unless a response starts: an exception escaped every handler

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            state = scope.get("state", {})
            route = state.get("route") or getattr(scope.get("route"), "path", "unmatched")
            outcome = state.get("outcome") or ("ok" if status < 400 else f"http_{status}")
            logger.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra=fields(
                    transport=self.transport,
                    outcome=outcome,
                    request_id=_request_id(scope),
                    channel=scope.get("path_params", {}).get("channel"),
                    seq=state.get("seq"),
                    status=status,
                ),
            )


def _request_id(scope: AsgiScope) -> str | None:
    event = scope.get("aws.event") or {}
    request_id = event.get("requestContext", {}).get("requestId")
    if request_id is not None:
        return str(request_id)
    for name, value in scope.get("headers", ()):
        if name == b"x-amzn-trace-id":
            return str(value.decode("latin-1"))
    return None
