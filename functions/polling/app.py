"""The polling API: publish, and read after a cursor, over stateless HTTP.

``create_app`` builds the application; ``app`` is the instance that uvicorn
(``polling.app:app``) and the Lambda handler serve. Importing this module touches
no AWS: the event log creates its DynamoDB client on the first request.

- ``POST /channels/{channel}/events`` with ``{"data": <json>}`` -> 201 and the Event.
- ``GET /channels/{channel}/events?after=N&limit=L&wait=W`` -> 200 with
  ``{"channel", "events", "next", "reset", "oldest"}``; without ``after`` the read
  starts at the channel's head (live only). Every 200 has a strong ``ETag`` (a hash
  of the body) and ``Cache-Control: no-cache``, so a client, or a browser's own
  cache, can revalidate with ``If-None-Match`` and get an empty 304.
- ``GET /healthz``, ``GET /openapi.json`` and ``GET /docs``.

Publish and read are ``eventlog.http_api``'s, shared with the SSE service, and so is the
request log (``http_api.RequestLog``); this module adds long polling and the OpenAPI
schema. Bad input of any kind is a 4xx problem (``polling.problems``) and is checked
before anything is written.

Auth (``polling.auth``): publish needs a token granting ``publish`` on the channel,
read one granting ``subscribe``; ``/healthz`` and the API's documentation are open,
and CORS preflights are answered before any route. ``publish_dependencies`` and
``read_dependencies`` add further guards, run after the token check and before the
request is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, params
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema
from starlette.responses import Response

from auth.verifier import Verifier
from eventlog import http_api
from eventlog.config import CHANNEL_PATTERN, EVENTS_PATH, MAX_LONG_POLL_SECONDS, MAX_READ_LIMIT
from eventlog.events import parse_cursor, validate_channel
from eventlog.http_api import RequestLog, json_response, parse_limit
from eventlog.log import EventLog, default_log
from polling.auth import require
from polling.config import (
    CORS_ALLOW_HEADERS,
    CORS_ALLOW_METHODS,
    CORS_EXPOSE_HEADERS,
    CORS_MAX_AGE_SECONDS,
    DOCS_PATH,
    HEALTH_PATH,
    OPENAPI_PATH,
    PollingSettings,
)
from polling.long_poll import parse_wait, wait_for_events
from polling.problems import PROBLEM_CONTENT_TYPE, install_problem_handlers

# --- Wire shapes, for the OpenAPI schema (responses are encoded by hand, see _json) -----------


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Any


class EventModel(BaseModel):
    channel: str
    seq: int
    data: Any
    time: str


class ReadResponse(BaseModel):
    channel: str
    events: list[EventModel]
    next: int
    reset: bool
    oldest: int | None


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str


# --- Parameters: parsed by the event log's own validators -------------------------------------
#
# A BeforeValidator that raises an EventLogError (not a ValueError) is not turned into a
# validation error by pydantic: it reaches the problem handlers with its own code and status,
# so a bad cursor is the same 400 ``invalid_cursor`` here as on every other transport.


Channel = Annotated[
    str,
    BeforeValidator(validate_channel),
    WithJsonSchema({"type": "string", "pattern": f"^{CHANNEL_PATTERN.pattern}$"}),
]
Cursor = Annotated[
    int | None,
    BeforeValidator(parse_cursor),
    WithJsonSchema({"type": "integer", "minimum": 0}),
    Query(description="Return the events after this seq; 0 for all retained. Omit: live only."),
]
Limit = Annotated[
    int,
    BeforeValidator(parse_limit),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_READ_LIMIT}),
    Query(description="The most events to return."),
]
Wait = Annotated[
    int,
    BeforeValidator(parse_wait),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_LONG_POLL_SECONDS}),
    Query(description="Seconds to wait for an event when there is none yet (long polling)."),
]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


# --- The application --------------------------------------------------------------------------


def create_app(
    *,
    log: EventLog | None = None,
    settings: PollingSettings | None = None,
    auth: Verifier | None = None,
    publish_dependencies: Sequence[params.Depends] = (),
    read_dependencies: Sequence[params.Depends] = (),
) -> FastAPI:
    """Build the polling app on ``log`` (default: the process-wide log from the environment).

    ``auth`` verifies tokens; default: as the ``AUTH_*`` environment variables say.
    """
    settings = settings or PollingSettings.from_env()
    verifier = auth or Verifier.from_env()

    def event_log() -> EventLog:
        return log if log is not None else default_log()

    app = FastAPI(
        title="Realtime polling API",
        summary="One event log, read by stateless polling and long polling.",
        version="1",
        openapi_url=OPENAPI_PATH,
        docs_url=DOCS_PATH,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    install_problem_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_allow_origins),
        allow_methods=list(CORS_ALLOW_METHODS),
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        max_age=CORS_MAX_AGE_SECONDS,
    )
    # Outermost: it sees every status, CORS preflights too.
    app.add_middleware(RequestLog, transport="polling")

    @app.post(
        EVENTS_PATH,
        status_code=HTTPStatus.CREATED,
        response_model=EventModel,
        dependencies=[require(verifier, "publish"), *publish_dependencies],
        responses=_problems(400, 401, 403, 413, 415, 422, 429, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PublishRequest.model_json_schema()}},
            }
        },
    )
    async def publish(request: Request, channel: Channel) -> Response:
        """Append ``data`` to the channel; the reply is the event with its ``seq``."""
        return await http_api.publish(request, log=event_log(), channel=channel)

    @app.get(
        EVENTS_PATH,
        response_model=ReadResponse,
        dependencies=[require(verifier, "subscribe"), *read_dependencies],
        responses={
            200: {"headers": {"ETag": {"schema": {"type": "string"}}}},
            304: {"description": "Not Modified: the If-None-Match matched; no body"},
            **_problems(400, 401, 403, 422, 429, 503),
        },
    )
    async def read(
        request: Request,
        channel: Channel,
        after: Cursor = None,
        limit: Limit = MAX_READ_LIMIT,
        wait: Wait = 0,
    ) -> Response:
        """The events after the cursor, oldest first, waiting up to ``wait`` s for one."""
        return await http_api.read(
            request,
            log=event_log(),
            channel=channel,
            after=after,
            limit=limit,
            wait=lambda read_once: wait_for_events(read=read_once, wait=wait),
        )

    @app.get(HEALTH_PATH, responses={304: {"description": "Not Modified"}})
    async def health(request: Request) -> Response:
        """Liveness only: answers without touching the event log."""
        return json_response(request, {"status": "ok"})

    return app


app = create_app()
