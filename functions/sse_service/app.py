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

How streams share one reader of the log, and why: ``sse_service.hub``. What one
stream costs, and why its route bypasses FastAPI's middleware: ``sse_service.stream``.

Deliberate decisions, where the wire contract is silent:

- A live-only stream's first message carries ``id: <head>``: a message without
  data fires no event, but sets the EventSource's ``lastEventId``, so a client that
  reconnects before its first event still resumes without a gap.
- The ``reset`` event carries ``id: <oldest - 1>``, the cursor the stream continues
  from, so a reconnect does not repeat it.
- A full process (``max_streams``) or a draining one answers ``503`` with
  ``Retry-After`` and a problem body. A browser's EventSource does not retry a 503
  by itself; the reference client does, after ``Retry-After``.
- A client that cannot keep up is cut off, even mid-write: the stream's write is
  cancelled, the response is ended if the socket takes it within a second, else the
  server closes the connection. The cut is logged once, as a warning with the channel;
  uvicorn's error line for the unfinished response is dropped for such a stream alone.
- Lifetime: every stream ends cleanly after a random time between half of
  ``max_stream_seconds`` and all of it; the client reconnects with ``Last-Event-ID``.
  On ECS this is the drain that matters: a deregistered task gets no SIGTERM until
  the load balancer's deregistration delay (longer than the lifetime) has run out,
  so by then its streams have moved to other tasks, a few at a time.
- Shutdown: uvicorn turns SIGTERM into its exit flag and stops accepting; a watcher
  here sees the flag (on the uvicorn server behind the SIGTERM handler) and drains:
  each stream ends cleanly at a random moment within the first half of
  ``drain_seconds``, and the hub cuts any stream still open at the end of it (one
  whose client stopped taking its writes).
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
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from auth.verifier import Verifier
from eventlog import metrics
from eventlog.config import (
    EVENTS_CORS_ALLOW_HEADERS,
    EVENTS_CORS_ALLOW_METHODS,
    EVENTS_CORS_EXPOSE_HEADERS,
)
from eventlog.http_api import RequestLog, event_routes
from eventlog.log import EventLog, default_log
from eventlog.problems import install_problem_handlers
from sse_service.broker import BrokerLink
from sse_service.hub import Hub
from sse_service.settings import STREAM_PATH, ServiceSettings
from sse_service.stream import (
    StreamGate,
    StreamGrant,
    StreamRoute,
    not_a_stream_cut_on_purpose,
    open_gate,
    stream_channel,
    token_gate,
)

__all__ = [
    "StreamGate",
    "StreamGrant",
    "app",
    "create_app",
    "open_gate",
    "sse_metrics",
    "token_gate",
]

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"

SHUTDOWN_POLL_SECONDS = 0.2
"""How often the drain watcher looks at the server's exit flag."""

DRAIN_REPORT_SECONDS = 5.0
"""Seconds between metrics lines while the process drains, so the drain's progress shows."""


# --- The application ----------------------------------------------------------------------------


class SseApp(FastAPI):
    """The FastAPI app, except for the stream route, which runs before its middleware."""

    stream_route: StreamRoute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            channel = stream_channel(scope["path"])
            if channel is not None:
                await self.stream_route(scope, receive, send, channel)
                return
        await super().__call__(scope, receive, send)


def _shutdown_requested() -> bool:
    # uvicorn's SIGTERM handler is a method of its server, which sets the server's flag.
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
) -> SseApp:
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
        heartbeat_seconds=settings.heartbeat_seconds,
        broker=broker,
    )

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

    app = SseApp(
        title="Realtime delivery: Server-Sent Events",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.hub = hub
    app.state.settings = settings
    # The server's own error line for a stream cut on purpose says nothing the warning does
    # not; added once however many apps a process builds (a filter is kept once).
    logging.getLogger("uvicorn.error").addFilter(not_a_stream_cut_on_purpose)
    install_problem_handlers(app)
    cors: dict[str, Any] = {
        "allow_origins": list(settings.cors_origins),
        "allow_methods": list(EVENTS_CORS_ALLOW_METHODS),
        "allow_headers": [*EVENTS_CORS_ALLOW_HEADERS, "Last-Event-ID", "Cache-Control"],
        "expose_headers": list(EVENTS_CORS_EXPOSE_HEADERS),
        "max_age": 600,
    }
    app.add_middleware(CORSMiddleware, **cors)
    # Outermost: publishes, page reads and refusals (a stream logs its own lines, from
    # SseApp, which serves it before any middleware); not the ALB's health checks.
    app.add_middleware(RequestLog, transport="sse", quiet_paths=(HEALTH_PATH,))
    app.stream_route = StreamRoute(
        hub=hub, settings=settings, gate=gate, cors=CORSMiddleware(app, **cors)
    )
    # The log's publish and page read, as the polling API serves them: SSE clients publish
    # and fill gaps here, with or without the polling transport (eventlog.http_api).
    app.router.routes.extend(event_routes(log=lambda: log, verifier=verifier))

    @app.api_route(STREAM_PATH, methods=["GET", "HEAD"], include_in_schema=False)
    async def stream_elsewhere(channel: str) -> Response:
        # Never reached (SseApp serves GET and HEAD of this path before routing); here so
        # that another method on it is a 405 problem naming the allowed ones, not a 404.
        raise RuntimeError(f"the stream of {channel!r} reached the router")

    @app.get(HEALTH_PATH)
    async def healthz() -> Response:
        status = HTTPStatus.SERVICE_UNAVAILABLE if hub.draining else HTTPStatus.OK
        return JSONResponse(
            {"status": "draining" if hub.draining else "ok", **hub.snapshot()}, status_code=status
        )

    return app


app = create_app()
