"""A local API Gateway WebSocket API: the real route handlers, API Gateway-shaped events.

Two servers on one event loop:

- the WebSocket endpoint (``websockets``), which plays API Gateway's side of the
  socket: it runs ``$connect`` (after an optional REQUEST authorizer) before the
  handshake, selects a route for every message on ``$request.body.action``,
  invokes the handler with a Lambda proxy event, and runs ``$disconnect`` once
  after the socket has closed, whoever closed it;
- the @connections management API (``local.connections_api``, under uvicorn),
  which the handlers reach through boto3's ``apigatewaymanagementapi`` client
  exactly as on AWS: ``POST``/``GET``/``DELETE /{stage}/@connections/{id}``, with
  API Gateway's answers for a gone connection (410), a malformed id (400), a
  frame over the message limit (413) and a path without the stage (403).

Handlers are synchronous (boto3), as on Lambda; each invocation runs on a
bounded thread pool, never on the event loop, so a handler that posts to
@connections is answered by this same loop while it waits.

Event shapes follow what Lambda receives from API Gateway (checked against
recorded events): ``requestContext`` carries ``routeKey``, ``eventType``,
``connectionId``, ``connectedAt``, ``requestTimeEpoch``, ``requestTime``,
``requestId``, ``extendedRequestId``, ``messageDirection``, ``stage``,
``domainName``, ``apiId`` and ``identity``; ``$connect`` adds the handshake's
headers and query string, MESSAGE events the ``body`` and ``messageId``,
``$disconnect`` the close code and reason. Ids have API Gateway's format,
16 characters of URL-safe base64 ending in ``=``; boto3 percent-encodes the
``=`` in the @connections path and the server decodes it.

With an authorizer, the authorizer's ``context`` and ``principalId`` become
``requestContext.authorizer`` on every event of the connection. API Gateway
turns every context value into a string on the way (``3`` -> ``"3"``,
``True`` -> ``"true"``) and refuses nested values (500), and so does this
gateway, so a claim that only works locally cannot slip through.

Limits come from ``eventlog.config`` through ``GatewayLimits`` (tests shorten
them): a frame over 32 KB or a message over 128 KB closes with 1009, a binary
frame with 1003, 10 minutes without a data message in either direction closes
with 1001, and so does reaching 2 hours.

Where this differs from API Gateway, on purpose:

- The 29 s integration timeout is not enforced (a thread cannot be stopped);
  only the opening handshake, ``$connect`` included, is cut at 29 s.
- A handler's return value is only used for ``$connect`` (status >= 400
  rejects); route responses (two-way routes) are not emulated, as the project
  posts every reply. A handler that raises gets API Gateway's
  ``{"message": "Internal server error", ...}`` frame; a message with no route
  and no ``$default`` gets ``{"message": "Forbidden", ...}``.
- ``queryStringParameters`` is ``None`` on ``$connect`` when there is no query
  string (API Gateway leaves the key out; ``event.get`` reads both the same).
  ``userAgent`` is in ``identity`` only when the client sent one.
  ``requestContext.authorizer`` has no ``integrationLatency``.
- Identity sources: like API Gateway, the gateway answers 401 without calling the
  authorizer when one of ``identity_source`` (``route.request.querystring.<name>``
  or ``route.request.header.<name>``) is missing or empty; without identity
  sources the authorizer is always called. A Deny is 403,
  ``Exception("Unauthorized")`` 401, any other failure 500, as on AWS.
- Close reasons in ``$disconnect`` are descriptive; API Gateway's texts are not
  documented beyond "Client-side close frame status not set" (1005). A
  ``DELETE /@connections/{id}`` closes with 1000.
- Pings are answered but, as on AWS, do not count as activity; the server never
  pings. permessage-deflate is not negotiated, so frame sizes are wire sizes.
- ``POST /@connections`` waits until the frame is handed to the socket; a client
  that does not read makes it wait instead of answering 429
  ``LimitExceededException``. No IAM signature check. No throttling either, unless
  ``local.disorder`` asks for it (``connections_throttled``), and then at random,
  not at a rate.
- Messages are invoked in the order they arrive unless ``local.disorder`` delays
  each by a random ``message_delay``: handlers still run concurrently, but without
  the delay a short one seldom overtakes an earlier one, as it may on AWS.
- Plain ``ws://`` on 127.0.0.1, at ``/`` or ``/{stage}``; API Gateway serves
  ``wss://{api}.execute-api.{region}.amazonaws.com/{stage}``.

Query strings carry tokens, so nothing here logs one: request paths are never
logged, and the ``websockets`` logger is kept below DEBUG, where it would log
the request line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import secrets
import socket
import string
import time
import uuid
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import uvicorn
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from eventlog.config import (
    WEBSOCKET_AUTHORIZER_RESULT_MAX_BYTES,
    WEBSOCKET_IDLE_TIMEOUT_SECONDS,
    WEBSOCKET_MAX_CONNECTION_SECONDS,
    WEBSOCKET_MAX_FRAME_BYTES,
    WEBSOCKET_MAX_MESSAGE_BYTES,
)
from local.connections_api import connections_app
from local.servers import EmbeddedServer, bind

logger = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any], Any], Any]
"""A Lambda handler: ``handler(event, context)``."""

Authorizer = Callable[[Mapping[str, Any], Any], Any]
"""A Lambda REQUEST authorizer: takes the authorizer event, returns an IAM policy document
with ``principalId``, ``policyDocument`` and optional ``context``; raising
``Exception("Unauthorized")`` means 401, as on AWS."""

CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"

INTEGRATION_TIMEOUT_SECONDS = 29
"""API Gateway's integration timeout for WebSocket APIs; here it bounds the handshake.
Source: docs.aws.amazon.com/apigateway/latest/developerguide/
apigateway-execution-service-websocket-limits-table.html"""

LOCAL_ACCOUNT_ID = "000000000000"


@dataclass(frozen=True, kw_only=True)
class GatewayLimits:
    """API Gateway's WebSocket limits; every default is the AWS value from ``eventlog.config``."""

    max_frame_bytes: int = WEBSOCKET_MAX_FRAME_BYTES
    max_message_bytes: int = WEBSOCKET_MAX_MESSAGE_BYTES
    idle_timeout_seconds: float = WEBSOCKET_IDLE_TIMEOUT_SECONDS
    max_connection_seconds: float = WEBSOCKET_MAX_CONNECTION_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.max_frame_bytes <= self.max_message_bytes:
            raise ValueError("need 0 < max_frame_bytes <= max_message_bytes")
        if self.idle_timeout_seconds <= 0 or self.max_connection_seconds <= 0:
            raise ValueError("timeouts must be positive")


def new_id() -> str:
    """An id in API Gateway's format: 16 characters of URL-safe base64, the last one ``=``."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


@dataclass(frozen=True)
class LocalLambdaContext:
    """The few attributes of Lambda's context object that handlers commonly read."""

    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 128

    def get_remaining_time_in_millis(self) -> int:
        return INTEGRATION_TIMEOUT_SECONDS * 1000


@dataclass(eq=False)
class _Connection:
    """What the gateway knows about one connection; touched only on the event loop."""

    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str | None
    authorizer: dict[str, str] | None = None
    websocket: ServerConnection | None = None
    open: bool = False  # handshake done and no close started: @connections may post
    opened_at: float = 0.0  # loop time
    last_active_at: float = 0.0  # loop time
    last_active_ms: int = 0
    closed_by_gateway: tuple[int, str] | None = None

    def touch(self, now: float) -> None:
        self.last_active_at = now
        self.last_active_ms = _now_ms()

    async def send(self, frame: str | bytes) -> bool:
        """Hand a @connections frame to the socket; False if it closed meanwhile."""
        if self.websocket is None:
            return False
        try:
            await self.websocket.send(frame)
        except ConnectionClosed:
            return False
        self.touch(asyncio.get_running_loop().time())
        return True


class _Rejection(Exception):
    """The handshake is refused with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LocalWebSocketApi:
    """API Gateway's WebSocket API and @connections API for ``routes``, on two local ports."""

    def __init__(
        self,
        *,
        routes: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = 0,
        management_port: int = 0,
        stage: str = "local",
        limits: GatewayLimits | None = None,
        authorizer: Authorizer | None = None,
        identity_source: Sequence[str] = (),
        invocation_threads: int = 32,
        message_delay: Callable[[], float] | None = None,
        connections_throttled: Callable[[], bool] | None = None,
    ) -> None:
        """``message_delay`` and ``connections_throttled`` are ``local.disorder``'s hooks:
        seconds to hold each message before its invocation, and whether to answer a
        @connections request 429. None: no delay, no throttling."""
        self.routes = dict(routes)
        self.host = host
        self.stage = stage
        self.limits = limits or GatewayLimits()
        self.authorizer = authorizer
        for source in identity_source:
            if not source.startswith(_IDENTITY_SOURCE_PREFIXES):
                raise ValueError(f"unsupported identity source {source!r}")
        self.identity_source = tuple(identity_source)
        self.api_id = "".join(
            secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10)
        )
        self.region = (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self._requested_ports = (port, management_port)
        self._invocation_threads = invocation_threads
        self._message_delay = message_delay
        self._connections_throttled = connections_throttled
        self._port = 0
        self._management_port = 0
        self._connections: dict[str, _Connection] = {}
        self._handshaking: dict[ServerConnection, _Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._ws_server: Server | None = None
        self._http_server: EmbeddedServer | None = None
        self._http_task: asyncio.Task[None] | None = None

    # --- Lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to (``/{stage}`` may be appended)."""
        return f"ws://{self.host}:{self._port}"

    @property
    def management_endpoint(self) -> str:
        """The stage's callback URL, for ``WEBSOCKET_MANAGEMENT_ENDPOINT`` (as deployed)."""
        return f"http://{self.host}:{self._management_port}/{self.stage}"

    @property
    def connection_count(self) -> int:
        return sum(1 for connection in self._connections.values() if connection.open)

    async def start(self) -> None:
        """Bind both ports (``PortInUse`` if one is taken) and start serving."""
        port, management_port = self._requested_ports
        ws_socket = bind(self.host, port, name="WebSocket API", option="--websocket-port")
        try:
            http_socket = bind(
                self.host, management_port, name="@connections API", option="--management-port"
            )
        except BaseException:
            ws_socket.close()
            raise
        self._port = ws_socket.getsockname()[1]
        self._management_port = http_socket.getsockname()[1]
        self._executor = ThreadPoolExecutor(
            max_workers=self._invocation_threads, thread_name_prefix="ws-route"
        )
        try:
            await self._start_servers(ws_socket, http_socket)
        except BaseException:
            await self.stop()
            ws_socket.close()
            http_socket.close()
            raise
        logger.info(
            "WebSocket API on %s (stage %s), @connections on %s",
            self.url,
            self.stage,
            self.management_endpoint,
        )

    async def _start_servers(self, ws_socket: socket.socket, http_socket: socket.socket) -> None:
        self._ws_server = await serve(
            self._serve_connection,
            sock=ws_socket,
            process_request=self._handshake,
            compression=None,
            max_size=(self.limits.max_message_bytes, self.limits.max_frame_bytes),
            ping_interval=None,  # API Gateway never pings clients
            open_timeout=INTEGRATION_TIMEOUT_SECONDS,
            close_timeout=5,
            logger=_NoDebugLogger(logging.getLogger("websockets.server"), {}),
        )
        config = uvicorn.Config(
            connections_app(
                stage=self.stage,
                max_message_bytes=self.limits.max_message_bytes,
                find=self._open_connection,
                close=self._delete_connection,
                throttled=self._connections_throttled,
            ),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._http_server = EmbeddedServer(config)
        self._http_task = asyncio.create_task(
            self._http_server.serve(sockets=[http_socket]), name="@connections"
        )
        while not self._http_server.started:
            if self._http_task.done():
                self._http_task.result()  # raises what stopped it
                raise RuntimeError("the @connections API stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Close every connection (each gets its ``$disconnect``) and stop both servers."""
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            await self._ws_server.wait_closed()
            self._ws_server = None
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._http_server is not None and self._http_task is not None:
            self._http_server.should_exit = True
            with contextlib.suppress(Exception):
                await self._http_task
            self._http_server = self._http_task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- The WebSocket side ---------------------------------------------------------------------

    async def _handshake(self, websocket: ServerConnection, request: Request) -> Response | None:
        """Authorize and run ``$connect`` before the handshake; a refusal is an HTTP error."""
        path = urlsplit(request.path).path.rstrip("/")
        if path not in ("", f"/{self.stage}"):
            return _http_error(HTTPStatus.FORBIDDEN, "Forbidden")
        connection = _Connection(
            connection_id=new_id(),
            connected_at_ms=_now_ms(),
            source_ip=_peer_ip(websocket),
            user_agent=request.headers.get("User-Agent"),
        )
        context = self._request_context(connection, CONNECT)
        headers, multi_headers = _headers(request.headers)
        query, multi_query = _query(request.path)
        try:
            if self.authorizer is not None:
                connection.authorizer = await self._authorize(
                    headers=headers,
                    multi_headers=multi_headers,
                    query=query,
                    multi_query=multi_query,
                    context=context,
                )
                context["authorizer"] = connection.authorizer
            if CONNECT in self.routes:
                for hop_by_hop in ("Connection", "Upgrade"):
                    headers, multi_headers = _without(hop_by_hop, headers, multi_headers)
                forwarded = {
                    "X-Forwarded-For": connection.source_ip,
                    "X-Forwarded-Port": str(self._port),
                    "X-Forwarded-Proto": "http",
                }
                event = {
                    "headers": {**headers, **forwarded},
                    "multiValueHeaders": {
                        **multi_headers,
                        **{name: [value] for name, value in forwarded.items()},
                    },
                    "queryStringParameters": query or None,
                    "multiValueQueryStringParameters": multi_query or None,
                    "requestContext": context,
                    "isBase64Encoded": False,
                }
                status = await self._invoke(CONNECT, event, connection)
                if status >= 400:
                    raise _Rejection(status, HTTPStatus(status).phrase if _known(status) else "")
        except _Rejection as rejection:
            logger.info(
                "%s refused before the handshake: %d", connection.connection_id, rejection.status
            )
            return _http_error(rejection.status, rejection.message)
        # From here on $disconnect is owed, even if the handshake itself fails.
        self._handshaking[websocket] = connection
        self._spawn(self._after_close(websocket, connection))
        return None

    async def _authorize(
        self,
        *,
        headers: dict[str, str],
        multi_headers: dict[str, list[str]],
        query: dict[str, str],
        multi_query: dict[str, list[str]],
        context: dict[str, Any],
    ) -> dict[str, str]:
        assert self.authorizer is not None
        if not all(
            _identity(source, headers=headers, query=query) for source in self.identity_source
        ):
            raise _Rejection(401, "Unauthorized")  # API Gateway's own answer: no invocation
        method_arn = (
            f"arn:aws:execute-api:{self.region}:{LOCAL_ACCOUNT_ID}:"
            f"{self.api_id}/{self.stage}/{CONNECT}"
        )
        event = {
            "type": "REQUEST",
            "methodArn": method_arn,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "stageVariables": {},
            "requestContext": dict(context),
        }
        loop = asyncio.get_running_loop()
        lambda_context = LocalLambdaContext(function_name="local-authorizer")
        assert self._executor is not None
        try:
            result = await loop.run_in_executor(
                self._executor, partial(self.authorizer, event, lambda_context)
            )
        except Exception as exc:
            if str(exc) == "Unauthorized":  # the Lambda convention for "no or bad token"
                raise _Rejection(401, "Unauthorized") from None
            logger.exception("the authorizer failed")
            raise _Rejection(500, "Internal Server Error") from None
        return authorizer_context(result, method_arn=method_arn)

    async def _serve_connection(self, websocket: ServerConnection) -> None:
        """The open connection: route every message, enforce the limits."""
        connection = self._handshaking.pop(websocket)
        loop = asyncio.get_running_loop()
        connection.websocket = websocket
        connection.opened_at = loop.time()
        connection.touch(loop.time())
        connection.open = True
        self._connections[connection.connection_id] = connection
        logger.info("%s open from %s", connection.connection_id, connection.source_ip)
        watchdog = asyncio.create_task(self._watch_time(connection))
        try:
            async for message in websocket:
                if not connection.open:
                    continue  # closing: API Gateway delivers nothing more
                if isinstance(message, bytes):
                    self._close(
                        connection, CloseCode.UNSUPPORTED_DATA, "binary frames are not supported"
                    )
                    continue
                connection.touch(loop.time())
                # Each message is its own invocation, as on API Gateway: concurrent, in no
                # promised order, so a client meets here the disorder it meets deployed.
                delay = 0.0 if self._message_delay is None else self._message_delay()
                self._spawn(self._route(connection, message, delay=delay))
        except ConnectionClosed:
            pass  # a limit violation or a lost client; _after_close reports it
        finally:
            watchdog.cancel()

    async def _watch_time(self, connection: _Connection) -> None:
        """Close the connection when it has been idle too long or open too long."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        while connection.open:
            now = loop.time()
            ends = connection.opened_at + limits.max_connection_seconds
            idle_ends = connection.last_active_at + limits.idle_timeout_seconds
            if now >= ends:
                self._close(connection, CloseCode.GOING_AWAY, "maximum connection duration reached")
                return
            if now >= idle_ends:
                self._close(connection, CloseCode.GOING_AWAY, "idle timeout")
                return
            await asyncio.sleep(min(ends, idle_ends) - now)

    def _close(self, connection: _Connection, code: int, reason: str) -> None:
        """Start a close the gateway decided on; from now on @connections answers 410."""
        if not connection.open or connection.websocket is None:
            return
        connection.open = False
        connection.closed_by_gateway = (code, reason)
        self._spawn(connection.websocket.close(code, reason))

    async def _route(self, connection: _Connection, body: str, *, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)  # disorder: a later message may be invoked first
        route_key = select_route(body, self.routes)
        context = self._request_context(connection, route_key)
        if route_key not in self.routes:
            await self._send_gateway_message(connection, "Forbidden", context)
            return
        context["messageId"] = new_id()
        event = {"requestContext": context, "body": body, "isBase64Encoded": False}
        try:
            await self._invoke(route_key, event, connection)
        except _Rejection:
            await self._send_gateway_message(connection, "Internal server error", context)

    async def _after_close(self, websocket: ServerConnection, connection: _Connection) -> None:
        """Once the socket has closed, run ``$disconnect`` (once) with how it closed."""
        await websocket.wait_closed()
        self._handshaking.pop(websocket, None)
        connection.open = False
        self._connections.pop(connection.connection_id, None)
        code, reason = connection.closed_by_gateway or _close_status(websocket)
        logger.info("%s closed: %d %s", connection.connection_id, code, reason)
        if DISCONNECT not in self.routes:
            return
        context = self._request_context(connection, DISCONNECT)
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
        event = {
            # API Gateway sends these placeholder headers with $disconnect.
            "headers": {
                "Host": context["domainName"],
                "x-api-key": "",
                "X-Forwarded-For": "",
                "x-restapi": "",
            },
            "multiValueHeaders": {
                "Host": [context["domainName"]],
                "x-api-key": [""],
                "X-Forwarded-For": [""],
                "x-restapi": [""],
            },
            "requestContext": context,
            "isBase64Encoded": False,
        }
        with contextlib.suppress(_Rejection):  # best effort, as on AWS; already logged
            await self._invoke(DISCONNECT, event, connection)

    async def _invoke(self, route_key: str, event: dict[str, Any], connection: _Connection) -> int:
        """Run the route's handler on the pool; its status, or ``_Rejection`` if it raised."""
        loop = asyncio.get_running_loop()
        handler = self.routes[route_key]
        lambda_context = LocalLambdaContext(function_name=f"local-{route_key.lstrip('$')}")
        started = time.perf_counter()
        assert self._executor is not None
        try:
            result = await loop.run_in_executor(
                self._executor, partial(handler, event, lambda_context)
            )
        except Exception:
            logger.exception("%s %s raised", connection.connection_id, route_key)
            raise _Rejection(500, "Internal Server Error") from None
        status = _status_of(result)
        logger.info(
            "%s %s -> %d (%.1f ms)",
            connection.connection_id,
            route_key,
            status,
            (time.perf_counter() - started) * 1000,
        )
        return status

    async def _send_gateway_message(
        self, connection: _Connection, message: str, context: Mapping[str, Any]
    ) -> None:
        """A frame API Gateway itself sends to the client, like ``Internal server error``."""
        if not connection.open or connection.websocket is None:
            return
        frame = {
            "message": message,
            "connectionId": connection.connection_id,
            "requestId": context["requestId"],
        }
        with contextlib.suppress(ConnectionClosed):
            await connection.websocket.send(json.dumps(frame))

    def _request_context(self, connection: _Connection, route_key: str) -> dict[str, Any]:
        now = time.time()
        request_id = new_id()
        identity: dict[str, str] = {"sourceIp": connection.source_ip}
        if connection.user_agent is not None:
            identity["userAgent"] = connection.user_agent
        event_type = {CONNECT: "CONNECT", DISCONNECT: "DISCONNECT"}.get(route_key, "MESSAGE")
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connection.connected_at_ms,
            "requestTimeEpoch": int(now * 1000),
            "identity": identity,
            "requestId": request_id,
            "domainName": f"{self.host}:{self._port}",
            "connectionId": connection.connection_id,
            "apiId": self.api_id,
        }
        if connection.authorizer is not None:
            context["authorizer"] = dict(connection.authorizer)
        return context

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- What the @connections API reaches (local.connections_api) ----------------------------

    def _open_connection(self, connection_id: str) -> _Connection | None:
        """The connection @connections may reach: handshake done and no close started."""
        connection = self._connections.get(connection_id)
        if connection is None or not connection.open or connection.websocket is None:
            return None
        return connection

    def _delete_connection(self, connection: _Connection) -> None:
        self._close(connection, CloseCode.NORMAL_CLOSURE, "connection deleted")


# --- Pure helpers -------------------------------------------------------------------------------


def select_route(body: str, routes: Mapping[str, Any]) -> str:
    """The route for ``body`` under ``$request.body.action``, or ``$default``."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return DEFAULT
    action = payload.get("action") if isinstance(payload, dict) else None
    if isinstance(action, str) and action in routes and action not in (CONNECT, DISCONNECT):
        return action
    return DEFAULT


def authorizer_context(result: Any, *, method_arn: str) -> dict[str, str]:
    """``requestContext.authorizer`` from an authorizer's result, or ``_Rejection``.

    As API Gateway: a policy that does not allow ``execute-api:Invoke`` on the
    method (or denies it) is 403; a malformed result, nested context values or a
    result over 8 KB are 500; context values are passed on as strings.
    """
    if not isinstance(result, Mapping):
        raise _Rejection(500, "Internal Server Error")
    if len(json.dumps(result, default=str)) > WEBSOCKET_AUTHORIZER_RESULT_MAX_BYTES:
        logger.error(
            "the authorizer's result is over %d bytes", WEBSOCKET_AUTHORIZER_RESULT_MAX_BYTES
        )
        raise _Rejection(500, "Internal Server Error")
    principal = result.get("principalId")
    policy = result.get("policyDocument")
    context = result.get("context") or {}
    if not isinstance(principal, str | int) or not isinstance(policy, Mapping):
        logger.error("the authorizer returned no principalId or no policyDocument")
        raise _Rejection(500, "Internal Server Error")
    if not isinstance(context, Mapping) or not all(
        isinstance(value, str | int | float | bool) for value in context.values()
    ):
        logger.error("the authorizer's context may hold only strings, numbers and booleans")
        raise _Rejection(500, "Internal Server Error")
    if not policy_allows(policy, method_arn):
        raise _Rejection(403, "Forbidden")
    passed = {str(key): _as_string(value) for key, value in context.items()}
    passed["principalId"] = str(principal)
    return passed


_IDENTITY_SOURCE_PREFIXES = ("route.request.querystring.", "route.request.header.")


def _identity(source: str, *, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The value an identity source names in a ``$connect`` request ("" when missing)."""
    if source.startswith("route.request.querystring."):
        return query.get(source.removeprefix("route.request.querystring."), "")
    name = source.removeprefix("route.request.header.").lower()
    return next((value for key, value in headers.items() if key.lower() == name), "")


def policy_allows(policy: Mapping[str, Any], resource: str) -> bool:
    """Whether an IAM policy allows ``execute-api:Invoke`` on ``resource``: any Deny wins."""
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, Mapping):
            continue
        actions = [str(action).lower() for action in _as_list(statement.get("Action"))]
        if not any(a in ("*", "execute-api:*", "execute-api:invoke") for a in actions):
            continue
        patterns = [str(pattern) for pattern in _as_list(statement.get("Resource"))]
        if not any(_wildcard(pattern).fullmatch(resource) for pattern in patterns):
            continue
        effect = str(statement.get("Effect", "")).lower()
        if effect == "deny":
            return False
        allowed = allowed or effect == "allow"
    return allowed


def _wildcard(pattern: str) -> re.Pattern[str]:
    # IAM resource wildcards: "*" any run of characters, "?" one character.
    return re.compile(".*".join(".".join(map(re.escape, p.split("?"))) for p in pattern.split("*")))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _as_string(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _status_of(result: Any) -> int:
    # A result without a statusCode counts as success, as a plain ``return`` does on AWS.
    if isinstance(result, Mapping):
        status = result.get("statusCode", 200)
        with contextlib.suppress(TypeError, ValueError):
            return int(status)
    return 200


def _close_status(websocket: ServerConnection) -> tuple[int, str]:
    """The close code and reason of a close the gateway did not start."""
    protocol = websocket.protocol
    received, sent = protocol.close_rcvd, protocol.close_sent
    if received is not None and protocol.close_rcvd_then_sent is not False:
        if received.code == CloseCode.NO_STATUS_RCVD:
            return received.code, "Client-side close frame status not set"
        return received.code, received.reason or "Client-side close frame status code"
    if sent is not None:  # websockets closed it: a frame or message over the limit (1009)
        return sent.code, sent.reason
    return CloseCode.ABNORMAL_CLOSURE, "connection lost without a close frame"


def _headers(headers: Headers) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers.raw_items():
        single[name] = value  # the last value wins, as in API Gateway's ``headers``
        multi.setdefault(name, []).append(value)
    return single, multi


def _without(
    name: str, single: dict[str, str], multi: dict[str, list[str]]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    lowered = name.lower()
    return (
        {k: v for k, v in single.items() if k.lower() != lowered},
        {k: v for k, v in multi.items() if k.lower() != lowered},
    )


def _query(path: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in parse_qsl(urlsplit(path).query, keep_blank_values=True):
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _peer_ip(websocket: ServerConnection) -> str:
    address = websocket.remote_address
    return str(address[0]) if address else ""


def _http_error(status: int, message: str) -> Response:
    body = json.dumps({"message": message}).encode()
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    reason = HTTPStatus(status).phrase if _known(status) else "Error"
    return Response(status, reason, headers, body)


def _known(status: int) -> bool:
    return status in HTTPStatus._value2member_map_


def _now_ms() -> int:
    return int(time.time() * 1000)


class _NoDebugLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ``websockets`` logger, never at DEBUG: there it logs request lines, tokens included."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs
