"""The polling API's own refusals; the problem format itself is ``eventlog.problems``.

Besides the handlers every HTTP transport installs, the polling API turns FastAPI's
request validation errors into 422 problems.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from eventlog import problems
from eventlog.http_api import InvalidWait, UnsupportedMediaType
from eventlog.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, problem_response

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "InvalidWait",
    "UnsupportedMediaType",
    "install_problem_handlers",
    "problem_response",
]


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # The rejected input is left out: it may be large, or carry what must not be echoed.
    errors = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(error['loc'])}: {error['msg']}" for error in errors)
    return problem_response(
        status=HTTPStatus.UNPROCESSABLE_ENTITY,
        code="validation_error",
        detail=detail or "the request is not valid",
        errors=errors,
    )


def install_problem_handlers(app: FastAPI) -> None:
    problems.install_problem_handlers(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
