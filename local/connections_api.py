"""The local @connections API: how a backend reaches the clients of the local WebSocket API.

As on AWS, the API lives under the stage, ``/{stage}/@connections/{connection_id}``,
so a management endpoint is the stage's callback URL: ``http://127.0.0.1:<port>/{stage}``
here, ``https://{api}.execute-api.{region}.amazonaws.com/{stage}`` deployed
(https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html).
boto3's ``apigatewaymanagementapi`` client with that ``endpoint_url`` posts to the
right path; a client built without the stage is refused, as deployed, instead of
working here and failing there.

Answers, each with the ``x-amzn-ErrorType`` botocore reads the error code from:

| request                                    | answer                               |
|--------------------------------------------|--------------------------------------|
| any path without this stage                | 403 ``ForbiddenException``           |
| an id not in API Gateway's format          | 400 ``BadRequestException``          |
| a well-formed id with no open connection   | 410 ``GoneException``                |
| any request, when disorder throttles it    | 429 ``LimitExceededException``       |
| ``POST`` over the message limit            | 413 ``PayloadTooLargeException``     |
| ``POST`` / ``GET`` / ``DELETE`` otherwise   | 200 / 200 with the connection / 204  |

The 403, 410 and 413 are the ones the API reference documents; a request without the
stage answers ``{"message": "Forbidden"}`` (aws/aws-sdk-php#1955). The 400 for a
malformed id (``Invalid connectionId``) is what API Gateway answers, though its API
reference lists no ``BadRequestException``: code that sends a truncated or mangled id
must not mistake it for a client that left.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CONNECTION_ID = re.compile(r"[A-Za-z0-9_-]{15}=")
"""API Gateway's connection id: 16 characters of URL-safe base64, the last one ``=``."""

_METHODS = ["GET", "POST", "DELETE"]
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class LiveConnection(Protocol):
    """What the API needs of an open connection."""

    connected_at_ms: int
    last_active_ms: int
    source_ip: str
    user_agent: str | None

    async def send(self, frame: str | bytes) -> bool:
        """Hand ``frame`` to the socket; False if the connection closed meanwhile."""
        ...


C = TypeVar("C", bound=LiveConnection)


def connections_app(
    *,
    stage: str,
    max_message_bytes: int,
    find: Callable[[str], C | None],
    close: Callable[[C], None],
    throttled: Callable[[], bool] | None = None,
) -> Starlette:
    """The @connections API for ``stage``: ``find`` an open connection by id, ``close`` one.

    ``throttled`` (``local.disorder``) is asked once per request of the stage: True
    answers it 429 ``LimitExceededException`` before anything else happens.
    """

    async def endpoint(request: Request) -> Response:
        if throttled is not None and throttled():
            return error(429, "LimitExceededException", "Rate exceeded")
        # The path arrives percent-decoded: "%3D" from boto3 is "=" here.
        connection_id = request.path_params["connection_id"]
        if not CONNECTION_ID.fullmatch(connection_id):
            return error(400, "BadRequestException", f"Invalid connectionId: {connection_id}")
        data = b""
        if request.method == "POST":
            data = await request.body()
            if len(data) > max_message_bytes:
                return error(
                    413,
                    "PayloadTooLargeException",
                    f"Data exceeds the maximum size of {max_message_bytes} bytes",
                )
        connection = find(connection_id)
        if connection is None:
            return error(410, "GoneException", "Gone")
        if request.method == "GET":
            return JSONResponse(
                {
                    "connectedAt": _iso(connection.connected_at_ms),
                    "identity": {
                        "sourceIp": connection.source_ip,
                        "userAgent": connection.user_agent or "",
                    },
                    "lastActiveAt": _iso(connection.last_active_ms),
                }
            )
        if request.method == "DELETE":
            close(connection)
            return Response(status_code=204)
        frame: str | bytes
        try:
            frame = data.decode()
        except UnicodeDecodeError:
            frame = data  # not text: sent as a binary frame
        if not await connection.send(frame):
            return error(410, "GoneException", "Gone")
        return Response(status_code=200)

    async def forbidden(_: Request) -> Response:
        return error(403, "ForbiddenException", "Forbidden")

    return Starlette(
        routes=[
            Route(f"/{stage}/@connections/{{connection_id}}", endpoint, methods=_METHODS),
            Route("/{path:path}", forbidden, methods=_ANY_METHOD),
        ]
    )


def error(status: int, error_type: str, message: str) -> JSONResponse:
    # botocore takes the error code from this header (rest-json protocol).
    return JSONResponse(
        {"message": message}, status_code=status, headers={"x-amzn-ErrorType": error_type}
    )


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
