"""The SSE service: one long-lived process holding thousands of open streams.

``create_app`` builds the application; ``app`` is the instance the container
(``python -m sse_service``) and the local stack (``sse_service.app:app``) serve.
Importing this module touches no AWS: the event log creates its client on first use.

- ``GET /channels/{channel}/stream?after=N`` -> ``text/event-stream``. On a reconnect
  the ``Last-Event-ID`` header wins over ``after``; with neither the stream is live
  only. It starts with a ``retry:`` hint; events are ``id: <seq>`` + ``data: <Event
  JSON>``; a cursor older than the retained history first gets ``event: reset`` with
  ``data: {"oldest": N}``; a ``:`` comment heartbeat goes out every
  ``heartbeat_seconds`` (15 s, under the load balancer's 60 s idle timeout).
- ``GET /healthz`` -> 200 while the process takes streams, 503 once it drains.
- ``POST /channels/{channel}/events`` and ``GET /channels/{channel}/events?after=N&limit=L``:
  publish and a page read, the polling API's contract from the same code
  (``eventlog.http_api``), so SSE clients publish and backfill through this service.

How streams share one reader of the log, and why: ``sse_service.hub``.

Deliberate decisions, where the wire contract is silent:

- A live-only stream's first message carries ``id: <head>``: a message without
  data fires no event, but sets the EventSource's ``lastEventId``, so a client that
  reconnects before its first event still resumes without a gap.
- The ``reset`` event carries ``id: <oldest - 1>``, the cursor the stream continues
  from, so a reconnect does not repeat it.
- A full process (``max_streams``) or a draining one answers ``503`` with
  ``Retry-After`` and a problem body. A browser's EventSource does not retry a 503
  by itself; the reference client does, after ``Retry-After``.
- A client that cannot keep up is cut off, even mid-write: the stream is cancelled,
  the response is ended if the socket takes it within a second, else the server
  closes the connection (and uvicorn logs that the response was incomplete).
- Lifetime: every stream ends cleanly after a random time between half of
  ``max_stream_seconds`` and all of it; the client reconnects with ``Last-Event-ID``.
  On ECS this is the drain that matters: a deregistered task gets no SIGTERM until
  the load balancer's deregistration delay (longer than the lifetime) has run out,
  so by then its streams have moved to other tasks, a few at a time.
- Shutdown: uvicorn turns SIGTERM into its exit flag and stops accepting; a watcher
  here sees the flag (through sse-starlette's ``AppStatus``, or the uvicorn server
  behind the SIGTERM handler) and drains: each stream ends cleanly at a random
  moment within the first half of ``drain_seconds``, and sse-starlette cancels any
  stream still open at the end of it.
- uvicorn's access log is off (``python -m sse_service``): browsers send the token in
  the query string, and the access log would write it down. The load balancer's
  access logs, if you enable them, record the query string too.

Auth: a ``StreamGate`` runs before anything else, before the stream opens. The
default, ``token_gate``, takes the token from ``Authorization: Bearer`` or, for a
browser's ``EventSource``, which cannot set headers, ``?token=``; no token or a bad
one is a 401 problem, a token without ``subscribe`` on the channel a 403. The grant
lasts until the token's ``exp``: then the stream ends with ``event: expired``, and
the client reconnects with a fresh token and ``Last-Event-ID``, losing nothing.
``create_app(gate=...)`` takes another gate (``open_gate``: no auth).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import AppStatus
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from auth.config import TOKEN_QUERY_PARAMETER
from auth.verifier import Verifier, token_from
from eventlog import metrics
from eventlog.config import (
    EVENTS_CORS_ALLOW_HEADERS,
    EVENTS_CORS_ALLOW_METHODS,
    EVENTS_CORS_EXPOSE_HEADERS,
)
from eventlog.events import parse_cursor, validate_channel
from eventlog.http_api import event_routes
from eventlog.log import EventLog, default_log
from eventlog.problems import install_problem_handlers, problem_response
from eventlog.structured_logs import fields
from sse_service.broker import BrokerLink
from sse_service.hub import Hub, Subscriber
from sse_service.settings import STREAM_PATH, ServiceSettings

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"

FINISH_TIMEOUT_SECONDS = 1.0
"""How long a cut-off stream may take to end its response before the connection is closed."""

SHUTDOWN_POLL_SECONDS = 0.2
"""How often the drain watcher looks at the server's exit flag."""

DRAIN_REPORT_SECONDS = 5.0
"""Seconds between metrics lines while the process drains, so the drain's progress shows."""

TRACE_HEADER = "x-amzn-trace-id"
"""The load balancer's id of a request: the ``request_id`` of this service's log lines."""


# --- The auth seam ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StreamGrant:
    """What a gate allows: a stream, until ``expires_at`` (epoch seconds) if set."""

    expires_at: float | None = None


class StreamGate(Protocol):
    def __call__(self, request: Request, channel: str) -> Awaitable[StreamGrant]: ...


async def open_gate(request: Request, channel: str) -> StreamGrant:
    """Every stream allowed, forever."""
    del request, channel
    return StreamGrant()


def token_gate(verifier: Verifier) -> StreamGate:
    """Streams for tokens that grant ``subscribe`` on the channel, until they expire."""

    async def gate(request: Request, channel: str) -> StreamGrant:
        if not verifier.enabled:
            return StreamGrant()
        token = token_from(
            authorization=request.headers.get("authorization"),
            query=request.query_params.get(TOKEN_QUERY_PARAMETER),
        )
        # In a worker thread: the first verification in a process reads Secrets Manager.
        claims = await anyio.to_thread.run_sync(verifier.verify, token)
        validate_channel(channel)
        claims.check(channel=channel, scope="subscribe", now=verifier.now())
        return StreamGrant(expires_at=claims.expires_at)

    return gate


# --- The stream response ------------------------------------------------------------------------


def _heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat", sep="\n")


class SseResponse(EventSourceResponse):
    """An sse-starlette response that the hub can cut off, and that leaves the hub when done."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        hub: Hub,
        subscriber: Subscriber,
        settings: ServiceSettings,
    ) -> None:
        super().__init__(
            body,
            ping=settings.heartbeat_seconds,
            ping_message_factory=_heartbeat,
            sep="\n",
            # After the drain window, sse-starlette cancels any stream still open.
            shutdown_grace_period=settings.drain_seconds,
        )
        self._hub = hub
        self._subscriber = subscriber

    def _fields(self, scope: Scope, outcome: str) -> dict[str, object]:
        headers = dict(scope.get("headers") or [])
        trace = headers.get(TRACE_HEADER.encode())
        return fields(
            transport="sse",
            outcome=outcome,
            request_id=trace.decode("latin-1") if trace else None,
            channel=self._subscriber.channel,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal finished
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True

        try:
            with anyio.CancelScope() as cut:
                self._subscriber.on_close = lambda reason: (
                    cut.cancel() if reason == "overflow" else None
                )
                await super().__call__(scope, receive, tracking_send)
            if cut.cancelled_caught and not finished:
                logger.warning(
                    "a %r stream could not keep up: disconnected",
                    scope["path"],
                    extra=self._fields(scope, "overflow"),
                )
                with anyio.move_on_after(FINISH_TIMEOUT_SECONDS):
                    await tracking_send({"type": "http.response.body", "body": b""})
        finally:
            self._hub.leave(self._subscriber)
            # One line per stream, when it ends: why (the client left, or a CloseReason).
            reason = self._subscriber.reason or "client_left"
            logger.info("stream ended: %s", reason, extra=self._fields(scope, reason))


# --- The application ----------------------------------------------------------------------------


def _cursor(request: Request) -> int | None:
    """``Last-Event-ID`` (set by a reconnecting EventSource) wins over ``after``."""
    last_event_id = request.headers.get("last-event-id", "").strip()
    if last_event_id:
        return parse_cursor(last_event_id)
    after = request.query_params.get("after")
    return None if after is None else parse_cursor(after)


def _shutdown_requested() -> bool:
    if AppStatus.should_exit:
        return True
    # When the app is imported after uvicorn installed its signal handlers, the flag
    # above is never set; the server behind the SIGTERM handler still has its own.
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))


async def _watch_for_shutdown(hub: Hub) -> None:
    # Polled: the flag is set by a signal handler, which cannot await anything.
    while not _shutdown_requested():  # noqa: ASYNC110
        await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
    hub.begin_drain()


def sse_metrics(hub: Hub, *, slow_clients_cut: int) -> dict[metrics.Metric, float]:
    """This process's streams now, and the slow clients cut since the last report."""
    return {
        metrics.SSE_OPEN_STREAMS: hub.open_streams,
        metrics.SSE_FEED_READERS: len(hub.feeds),
        metrics.SSE_SLOW_CLIENTS_CUT: slow_clients_cut,
        metrics.SSE_DRAINING: hub.open_streams if hub.draining else 0,
    }


async def _report_metrics(hub: Hub, settings: ServiceSettings, interval: float) -> None:
    # EMF lines (eventlog.metrics): the container's standard output goes to CloudWatch Logs,
    # which turns them into metrics; the autoscaling tracks OpenStreams.
    reported = 0
    while True:
        cut = hub.stats["closed_overflow"]
        metrics.emit(settings.metrics_service, sse_metrics(hub, slow_clients_cut=cut - reported))
        reported = cut
        await asyncio.sleep(min(interval, DRAIN_REPORT_SECONDS) if hub.draining else interval)


def create_app(
    *,
    log: EventLog | None = None,
    settings: ServiceSettings | None = None,
    gate: StreamGate | None = None,
    auth: Verifier | None = None,
) -> FastAPI:
    """Build the service around an event log (default: the one configured by the environment).

    ``auth`` verifies the tokens of publishes and page reads; default: as the ``AUTH_*``
    environment variables say. ``gate`` decides who may open a stream; default:
    ``token_gate`` with that verifier.
    """
    settings = settings or ServiceSettings.from_env()
    verifier = auth or Verifier.from_env()
    gate = gate or token_gate(verifier)
    broker = BrokerLink(settings.broker_url) if settings.broker_url else None
    log = log or default_log()
    hub = Hub(
        log=log,
        queue_bytes=settings.queue_bytes,
        write_slice_bytes=settings.write_slice_bytes,
        reader_interval_seconds=settings.reader_interval_seconds,
        drain_seconds=settings.drain_seconds,
        retry_milliseconds=settings.retry_milliseconds,
        broker=broker,
    )
    retry_after = str(max(1, math.ceil(settings.retry_milliseconds / 1000)))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_watch_for_shutdown(hub), name="sse-drain-watcher")]
        if broker is not None:
            broker.start()
        if settings.metrics_interval_seconds is not None:
            tasks.append(
                asyncio.create_task(
                    _report_metrics(hub, settings, settings.metrics_interval_seconds),
                    name="sse-metrics",
                )
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            await hub.aclose()
            if broker is not None:
                await broker.aclose()

    app = FastAPI(
        title="Realtime delivery: Server-Sent Events",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.hub = hub
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=list(EVENTS_CORS_ALLOW_METHODS),
        allow_headers=[*EVENTS_CORS_ALLOW_HEADERS, "Last-Event-ID", "Cache-Control"],
        expose_headers=list(EVENTS_CORS_EXPOSE_HEADERS),
        max_age=600,
    )
    # The log's publish and page read, as the polling API serves them: SSE clients publish
    # and fill gaps here, with or without the polling transport (eventlog.http_api).
    app.router.routes.extend(event_routes(log=lambda: log, verifier=verifier))

    def unavailable(code: str, detail: str) -> Response:
        return problem_response(
            status=HTTPStatus.SERVICE_UNAVAILABLE,
            code=code,
            detail=detail,
            headers={"Retry-After": retry_after},
        )

    @app.get(STREAM_PATH)
    async def stream(request: Request, channel: str) -> Response:
        # The gate first: a caller without a valid token learns nothing, not even that
        # its channel name or cursor is malformed.
        grant = await gate(request, channel)
        validate_channel(channel)
        cursor = _cursor(request)
        # From here to hub.admit there is no await, so concurrent requests cannot
        # all pass the check and overshoot the cap.
        if hub.draining:
            return unavailable("draining", "this server is shutting down; reconnect")
        if hub.open_streams >= settings.max_streams:
            return unavailable(
                "too_many_streams", f"this server holds its maximum of {settings.max_streams}"
            )
        subscriber = hub.admit(channel)
        hub.end_after(subscriber, max_seconds=settings.max_stream_seconds)
        if grant.expires_at is not None:
            hub.expire_at(subscriber, expires_at=grant.expires_at)
        return SseResponse(
            hub.stream(subscriber, cursor=cursor),
            hub=hub,
            subscriber=subscriber,
            settings=settings,
        )

    @app.get(HEALTH_PATH)
    async def healthz() -> Response:
        status = HTTPStatus.SERVICE_UNAVAILABLE if hub.draining else HTTPStatus.OK
        return JSONResponse(
            {"status": "draining" if hub.draining else "ok", **hub.snapshot()}, status_code=status
        )

    return app


app = create_app()
