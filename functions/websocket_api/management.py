"""Sending frames: the API Gateway @connections API, and its one retry policy.

Every frame the server sends, a reply or a fan-out delivery, is one
``post_to_connection`` call. Replies could instead be Lambda return values on
routes with route responses, but those are delivered after the function
returns, so a ``subscribed`` frame would arrive after the backlog that must
follow it; posting is one mechanism for everything, in the order of the calls.

Where the API lives: ``https://{domainName}/{stage}`` from the route's own event,
unless ``WEBSOCKET_MANAGEMENT_ENDPOINT`` says otherwise. The fan-out has no
WebSocket event and always takes the variable; the local stack sets it to its
own @connections server on 127.0.0.1; and a custom domain whose base path is not
the stage name needs it too.

The call itself is plain HTTP: ``POST https://{api-id}.execute-api.{region}.amazonaws.com
/{stage}/@connections/{connection_id}`` with the frame as the body (``DELETE`` closes the
connection), the id URL-encoded, signed with SigV4 for the service ``execute-api``; the
caller's role needs ``execute-api:ManageConnections`` on
``arn:aws:execute-api:{region}:{account}:{api-id}/{stage}/POST/@connections``
(https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html,
.../apigateway-websocket-control-access-iam.html). ``ConnectionsClient`` sends exactly
that: botocore's ``SigV4Auth`` signs each request with the credentials of the moment
(botocore's resolver: the environment on Lambda, refreshed when they expire), and the
request goes over one of a few kept-alive ``http.client`` connections. boto3's
``apigatewaymanagementapi`` client did the same work through its whole machinery
(parameter validation, serializer, event hooks, endpoint rules, retry handler, parser):
about 1 ms of CPU per post, against 0.3 ms here, and a fan-out is CPU-bound once its
threads overlap the network waits (``bench/websocket_fanout.py``). Not urllib3's pool,
which botocore uses: it added 0.17 ms per request over ``http.client`` on this path.
Divergences from the SDK client, on purpose: no proxy settings (``HTTPS_PROXY``), no
FIPS or dual-stack endpoint variants; set ``WEBSOCKET_MANAGEMENT_ENDPOINT`` to such an
endpoint if you need one. ``sdk_client`` remains for what only boto3 reaches (moto).

Outcomes of a post, each handled by name. The API's errors are 403 ``ForbiddenException``,
410 ``GoneException``, 413 ``PayloadTooLargeException`` and 429 ``LimitExceededException``
(the service model botocore ships, ``apigatewaymanagementapi/2018-11-29``, signing name
``execute-api``; the SDK reference: https://boto3.amazonaws.com/v1/documentation/api/latest/
reference/services/apigatewaymanagementapi.html), each named in the ``x-amzn-ErrorType``
header, which ``ConnectionsClient`` reads as botocore's rest-json parser does:

- delivered;
- ``GoneException`` (410): the client has left (or, on AWS, the connection is
  still in ``$connect``): ``post`` returns False and the caller forgets it;
- throttled (429 ``LimitExceededException``) or a transient failure (5xx, a
  connection error): retried with full-jitter exponential backoff, then
  ``PostFailed`` (transient). A caller with a deadline may ask for a throttled post
  to be retried until the deadline instead of ``max_attempts`` times
  (``patient_when_throttled``): throttling says "slower", not "broken";
- any other refusal (403, 413 too large, 400): retrying cannot help, so
  ``PostFailed`` (permanent).

Neither client retries on its own (``ConnectionsClient`` never; ``sdk_client`` has
botocore's retries switched off), so the policy above is the only one and its attempts
are counted in one place.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from websocket_api.config import (
    DEFAULT_FANOUT_WORKERS,
    MANAGEMENT_ENDPOINT_ENV,
    POST_BACKOFF_BASE_SECONDS,
    POST_BACKOFF_CAP_SECONDS,
    POST_CONNECT_TIMEOUT_SECONDS,
    POST_MAX_ATTEMPTS,
    POST_READ_TIMEOUT_SECONDS,
)

if TYPE_CHECKING:
    import http.client
    import ssl

logger = logging.getLogger(__name__)

_THROTTLED = {"LimitExceededException", "TooManyRequestsException", "ThrottlingException"}
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()

IDLE_CHECK_AFTER_SECONDS = 1.0
"""A kept-alive connection idle this long is checked for a close by the server before reuse."""

SIGNING_SERVICE = "execute-api"
"""The SigV4 service name of the @connections API (and of every API Gateway API's own calls)."""


class PostFailed(Exception):
    """A frame could not be delivered; ``transient`` says whether a later retry may succeed."""

    def __init__(self, connection_id: str, reason: str, *, transient: bool) -> None:
        super().__init__(f"post to {connection_id} failed: {reason}")
        self.connection_id = connection_id
        self.transient = transient


def endpoint_for(request_context: Mapping[str, Any]) -> str:
    """The @connections API root for a route event's ``requestContext``."""
    override = os.environ.get(MANAGEMENT_ENDPOINT_ENV)
    if override:
        return override
    return f"https://{request_context['domainName']}/{request_context['stage']}"


def configured_endpoint() -> str:
    """The endpoint from the environment, for code that has no WebSocket event."""
    endpoint = os.environ.get(MANAGEMENT_ENDPOINT_ENV)
    if not endpoint:
        raise RuntimeError(f"{MANAGEMENT_ENDPOINT_ENV} is not set")
    return endpoint


def client_for(endpoint: str, *, max_pool_connections: int = DEFAULT_FANOUT_WORKERS) -> Any:
    """A shared, thread-safe @connections client for ``endpoint``."""
    client = _clients.get(endpoint)
    if client is None:
        with _clients_lock:
            client = _clients.get(endpoint)
            if client is None:
                client = _clients[endpoint] = new_client(
                    endpoint, max_pool_connections=max_pool_connections
                )
    return client


def new_client(
    endpoint: str, *, max_pool_connections: int = DEFAULT_FANOUT_WORKERS
) -> ConnectionsClient:
    """A new @connections client for ``endpoint``: one signed request per call, no SDK client."""
    return ConnectionsClient(endpoint, max_pool_connections=max_pool_connections)


def sdk_client(endpoint: str, *, max_pool_connections: int = DEFAULT_FANOUT_WORKERS) -> Any:
    """boto3's ``apigatewaymanagementapi`` client for ``endpoint``, with the same interface.

    Production posts through ``ConnectionsClient``; this one is for what only boto3
    reaches (moto's in-process @connections API in the tests), with its retries off so
    that this module's policy stays the only one.
    """
    import boto3  # imported on first use: a handler that never posts never pays for it
    from botocore.config import Config

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        config=Config(
            # total: botocore reads a bare max_attempts as retries, 1 as one more try.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=POST_CONNECT_TIMEOUT_SECONDS,
            read_timeout=POST_READ_TIMEOUT_SECONDS,
            max_pool_connections=max_pool_connections,
        ),
    )


class ConnectionsClient:
    """The @connections API of one stage: SigV4-signed requests over kept-alive connections.

    The calls and errors of boto3's ``apigatewaymanagementapi`` client
    (``post_to_connection(ConnectionId=, Data=)``, ``delete_connection(ConnectionId=)``;
    a refusal raises botocore's ``ClientError`` with the same ``response``), so either
    one serves ``post`` and ``close``. Thread-safe: each call takes an idle connection
    from the pool (or opens one) and puts it back once the answer is read; at most
    ``max_pool_connections`` stay open between calls.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        max_pool_connections: int = DEFAULT_FANOUT_WORKERS,
        credentials: Any = None,
        region: str | None = None,
    ) -> None:
        import botocore.session
        from botocore.auth import SigV4Auth

        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an @connections endpoint: {endpoint!r}")
        if credentials is None or region is None:
            session = botocore.session.get_session()
            # The SDK's own resolver: the environment's keys on Lambda; credentials that
            # expire (an assumed role, SSO) are refreshed as every botocore client does.
            credentials = credentials or session.get_credentials()
            region = region or session.get_config_variable("region")
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign @connections requests with")
        if not region:
            raise RuntimeError("no AWS region to sign @connections requests for")
        self.endpoint = endpoint
        self._credentials = credentials
        self._region = region
        self._signer = SigV4Auth
        self._root = f"{parts.scheme}://{parts.netloc}"
        self._stage_path = parts.path.rstrip("/")
        default_port = 443 if parts.scheme == "https" else 80
        # Sent as signed; set here so that neither the signer nor http.client derive it.
        self._host = parts.netloc.removesuffix(f":{default_port}")
        self._address = (parts.hostname, parts.port or default_port)
        self._tls = _tls_context() if parts.scheme == "https" else None
        self._max_idle = max_pool_connections
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        """Kept-alive connections, each with the monotonic time it was put back."""
        self._lock = threading.Lock()
        self.opened = 0
        """Connections opened so far (a warm client reuses them: tests and benchmarks read it)."""

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        """``POST @connections/{id}``: send ``Data`` to the connection as one message."""
        self._call("POST", ConnectionId, Data, "PostToConnection")

    def delete_connection(self, *, ConnectionId: str) -> None:
        """``DELETE @connections/{id}``: close the connection."""
        self._call("DELETE", ConnectionId, b"", "DeleteConnection")

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    def __del__(self) -> None:
        # A client let go (a test's, a replaced endpoint's) closes its sockets rather
        # than leaving them to the garbage collector.
        if hasattr(self, "_idle"):
            self.close()

    def _call(self, method: str, connection_id: str, body: bytes, operation: str) -> None:
        import http.client

        from botocore.awsrequest import AWSRequest

        # As boto3 sends it: the id percent-encoded ("=" is %3D), "@" as it is.
        path = f"{self._stage_path}/@connections/{quote(connection_id, safe='')}"
        request = AWSRequest(
            method=method, url=self._root + path, data=body, headers={"Host": self._host}
        )
        # Frozen for this request only, never kept: refreshable credentials stay fresh.
        self._signer(
            self._credentials.get_frozen_credentials(), SIGNING_SERVICE, self._region
        ).add_auth(request)
        # The head and the body in one write: one segment on the wire and one system call,
        # where http.client's request() writes them apart.
        head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        message = f"{method} {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n"
        connection = self._checkout()
        try:
            sock = connection.sock
            assert sock is not None
            sock.sendall(message.encode("latin-1") + body)
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            data = response.read()  # read to the end: the connection can carry the next call
        except BaseException:
            connection.close()  # its state is unknown: never reused
            raise
        if response.will_close:
            connection.close()
        else:
            self._checkin(connection)
        if response.status >= 300:
            headers = {name.lower(): value for name, value in response.getheaders()}
            raise _client_error(response.status, headers, data, operation)

    def _checkout(self) -> http.client.HTTPConnection:
        import http.client  # here and not at the top: the handlers' cold start never pays for it
        import socket

        with self._lock:
            while self._idle:
                idle, since = self._idle.pop()
                # Only a connection idle for a while is checked: a server drops idle ones
                # after its keep-alive timeout (seconds), and one that ends a connection
                # after a response says so in it (``will_close``). Under a fan-out every
                # connection is back within milliseconds, and the check is a system call
                # per post; a connection dropped anyway fails its post, which is retried.
                if time.monotonic() - since < IDLE_CHECK_AFTER_SECONDS or not _dropped(idle):
                    return idle
                idle.close()
            self.opened += 1
        host, port = self._address
        connection: http.client.HTTPConnection
        if self._tls is None:
            connection = http.client.HTTPConnection(
                host, port, timeout=POST_CONNECT_TIMEOUT_SECONDS
            )
        else:
            connection = http.client.HTTPSConnection(
                host, port, timeout=POST_CONNECT_TIMEOUT_SECONDS, context=self._tls
            )
        connection.connect()
        sock = connection.sock
        assert sock is not None
        sock.settimeout(POST_READ_TIMEOUT_SECONDS)  # connected: from now on, each read's
        # A post longer than one segment ends in a short one, which Nagle's algorithm holds
        # until the rest is acknowledged (urllib3 switches it off for botocore too).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _checkin(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append((connection, time.monotonic()))
                return
        connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether the server closed an idle connection (readable while idle means EOF or junk)."""
    import select

    sock = connection.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # not select(): a process may hold over 1,024 sockets
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _tls_context() -> ssl.SSLContext:
    import ssl

    from botocore.httpsession import get_cert_path

    # The CA bundle botocore verifies API Gateway's certificate with.
    return ssl.create_default_context(cafile=get_cert_path(True))


def _client_error(status: int, headers: Mapping[str, str], body: bytes, operation: str) -> Any:
    """botocore's ``ClientError`` for a refusal, as the SDK client's parser would build it.

    ``headers``: the response's, with lowercase names."""
    from botocore.exceptions import ClientError

    # rest-json: the error code is the x-amzn-ErrorType header ("Code:uri" at most).
    code = (headers.get("x-amzn-errortype") or "").split(":", 1)[0]
    message = ""
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    if isinstance(parsed, dict):
        code = code or str(parsed.get("__type") or parsed.get("code") or "")
        message = str(parsed.get("message") or parsed.get("Message") or "")
    return ClientError(
        {
            "Error": {"Code": code or str(status), "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": dict(headers),
                "RequestId": headers.get("x-amzn-requestid", ""),
            },
        },
        operation,
    )


def post(
    client: Any,
    connection_id: str,
    frame: str,
    *,
    max_attempts: int = POST_MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    out_of_time: Callable[[], bool] = lambda: False,
    patient_when_throttled: bool = False,
    on_transient: Callable[[BaseException], None] | None = None,
) -> bool:
    """Send one frame; False if the connection is gone, ``PostFailed`` if it could not be sent.

    ``out_of_time`` is asked before each retry: once it says so, the frame fails (transient).
    ``patient_when_throttled``: a throttled post is retried until then, however many tries
    that takes (only for a caller whose ``out_of_time`` does say so one day).
    ``on_transient`` hears every throttled or transient failure (the fan-out counts throttles).
    """
    data = frame.encode()
    attempt = 0
    while True:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
        except Exception as exc:
            kind = classify(exc)
            if kind == "gone":
                return False
            if kind == "permanent":
                raise PostFailed(connection_id, _describe(exc), transient=False) from exc
            if on_transient is not None:
                on_transient(exc)
            attempt += 1
            capped = not (patient_when_throttled and kind == "throttled")
            if (capped and attempt >= max_attempts) or out_of_time():
                raise PostFailed(connection_id, _describe(exc), transient=True) from exc
            ceiling = min(POST_BACKOFF_CAP_SECONDS, POST_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            delay = random.uniform(0, ceiling)  # noqa: S311
            logger.info("post to %s: %s; retrying in %.3f s", connection_id, _describe(exc), delay)
            sleep(delay)
        else:
            return True


def close(client: Any, connection_id: str) -> None:
    """Close a connection (``DELETE @connections/{id}``); one that is already gone is fine."""
    try:
        client.delete_connection(ConnectionId=connection_id)
    except Exception as exc:
        if classify(exc) != "gone":
            raise


def classify(exc: BaseException) -> str:
    """``gone``, ``throttled``, ``retry`` (transient) or ``permanent``, without botocore."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "retry"  # connection reset, timeout: nothing reached API Gateway, or no answer
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "GoneException" or status == 410:
        return "gone"
    if code in _THROTTLED or status == 429:
        return "throttled"
    if isinstance(status, int) and status >= 500:
        return "retry"
    return "permanent"


def throttled(exc: BaseException) -> bool:
    """Whether API Gateway refused ``exc``'s call for the rate (429), not for a fault."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = response.get("Error", {}).get("Code")
    return code in _THROTTLED or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 429


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}"
