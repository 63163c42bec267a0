"""Refusals as RFC 9457 problems (``application/problem+json``), before any stream opens.

The body is the one the polling API sends: ``type`` (the code under a ``tag:`` URI
prefix), ``title``, ``status``, ``detail`` and the machine-readable ``code`` of
``eventlog.errors``, so a client handles a refusal the same way on both.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from eventlog.errors import EventLogError
from eventlog.events import encode_json

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "tag:realtime-delivery,2026:problem:"

_HTTP_ERROR_CODES: dict[int, str] = {
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
}


def problem_response(
    *, status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return Response(
        encode_json(body), status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


async def _event_log_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EventLogError)
    return problem_response(
        status=exc.http_status, code=exc.code, detail=exc.message, headers=exc.headers
    )


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem_response(
        status=exc.status_code,
        code=_HTTP_ERROR_CODES.get(exc.status_code, f"http_{exc.status_code}"),
        detail=str(exc.detail),
        headers=dict(exc.headers or {}),
    )


async def _unexpected_error(_request: Request, _exc: Exception) -> Response:
    # Starlette re-raises after this response, so the server still logs the failure.
    return problem_response(
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        code="internal_error",
        detail="the server failed to handle this request; the failure has been logged",
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EventLogError, _event_log_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
