"""Refusals over HTTP as RFC 9457 problems (``application/problem+json``), for both HTTP transports.

A problem body carries ``type``, ``title``, ``status``, ``detail`` and a ``code``
extension. ``code`` is the machine-readable code of ``eventlog.errors``, the same
string a WebSocket client sees in an ``error`` frame, and ``type`` is that code
under a fixed prefix. The prefix is a ``tag:`` URI (RFC 4151): unique and stable,
and, unlike an https URL, nothing a client could be tempted to fetch.

The polling API and the SSE service install the same handlers, so a client handles
a refusal the same way on both: the event log's errors (with their own status),
Starlette's HTTP errors (404, 405, ...) and, as a last resort, any other exception
(500, logged by the server, with no detail leaked to the client, and with the CORS
headers every other answer has). Only the HTTP
transports import this module (it needs Starlette); the WebSocket functions never do.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventlog.config import RETRY_AFTER_SECONDS
from eventlog.errors import EventLogError
from eventlog.events import encode_json

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "tag:realtime-delivery,2026:problem:"

# Codes for Starlette's own HTTP errors; spelled out because reason phrases change
# between Python versions (413 is "Request Entity Too Large" before 3.13).
_HTTP_ERROR_CODES: dict[int, str] = {
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "content_too_large",
}


def problem_body(*, status: int, code: str, detail: str, **extensions: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
        **extensions,
    }


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A problem response; a 503 also says when to retry."""
    all_headers = dict(headers or {})
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        all_headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    body = problem_body(status=status, code=code, detail=detail, **extensions)
    return Response(
        encode_json(body), status_code=status, headers=all_headers, media_type=PROBLEM_CONTENT_TYPE
    )


def problem_for(exc: Exception) -> Response | None:
    """The problem answer to an event log error or a Starlette HTTP error; None to any other."""
    if isinstance(exc, EventLogError):
        return problem_response(
            status=exc.http_status, code=exc.code, detail=exc.message, headers=exc.headers
        )
    if isinstance(exc, HTTPException):
        return problem_response(
            status=exc.status_code,
            code=_HTTP_ERROR_CODES.get(exc.status_code, f"http_{exc.status_code}"),
            detail=str(exc.detail),
            headers=dict(exc.headers or {}),
        )
    return None


def internal_error_response() -> Response:
    """The last resort's answer: no detail leaked; the server logs the exception."""
    return problem_response(
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        code="internal_error",
        detail="the server failed to handle this request; the failure has been logged",
    )


async def _known_error(_request: Request, exc: Exception) -> Response:
    response = problem_for(exc)
    assert response is not None
    return response


class _LastResort:
    """Answer any other exception with a 500 problem, from inside the CORS middleware.

    Starlette's own handler for ``Exception`` runs in its outermost middleware, outside
    CORS, so its 500 carries no ``Access-Control-Allow-Origin`` and a browser reports an
    opaque network error instead. This middleware is added before CORS, so CORS wraps it.
    The exception is raised again after the answer, so the server still logs it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if not started:
                await internal_error_response()(scope, receive, send)
            raise


def install_problem_handlers(app: Starlette) -> None:
    """The handlers, and the last resort; call it before adding the CORS middleware."""
    app.add_exception_handler(EventLogError, _known_error)
    app.add_exception_handler(HTTPException, _known_error)
    app.add_middleware(_LastResort)
