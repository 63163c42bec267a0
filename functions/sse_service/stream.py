"""The stream route, as a bare ASGI handler: one task and a handful of objects per stream.

Ten thousand streams live in one process, so what each one costs is the figure that
sizes the task. The rest of the service is a FastAPI app (``sse_service.app``); this
route is not: ``SseApp`` sends ``GET``/``HEAD`` of ``STREAM_PATH`` here before the
FastAPI middleware stack, and a stream runs in the server's own task for the
request, with:

- no middleware frames around it (errors, CORS, exceptions, router: each would stay
  suspended for the stream's whole life). The CORS headers come from the app's own
  ``CORSMiddleware`` (one configuration), applied to the one ``http.response.start``;
  refusals are the same problem answers (``eventlog.problems``) the app gives;
- no task for the heartbeat: it is a timeout on the subscriber's wait
  (``Hub.stream``);
- no task listening for the client to leave: ``DisconnectWatch`` puts a callback on
  the future the server's ``receive`` waits on;
- no task switch to deliver a live event: while the stream waits, the feed writes to
  it through ``write_now`` (``sse_service.hub`` says when, and what happens when the
  socket is backed up).

Why not sse-starlette, which this route used to run in (``bench/sse_fanout.py``,
10,000 streams; the breakdown is in docs/ARCHITECTURE.md):

- It runs four tasks per stream in an anyio task group (body, heartbeat, shutdown
  watcher, disconnect listener), inside the middleware stack: 53 KB per stream, a
  quarter of it anyio's task and cancel-scope state, another quarter the middleware
  frames; 17 KB without them.
- Every write goes through its body task, a cancel scope and a lock: one event to
  10,000 streams took 561 ms first to last, 262 ms written by the feed.
- A disconnect still needs a listener: uvicorn (ASGI spec 2.3) ignores a write to a
  client that has gone, so no write ever fails and ends the stream by itself.
- Shutdown: sse-starlette cancelled every stream still open at the end of the drain
  window; ``Hub.begin_drain`` does that now (``Subscriber.cut``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any, Protocol

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from auth.config import TOKEN_QUERY_PARAMETER
from auth.verifier import Verifier, token_from
from eventlog.events import parse_cursor, validate_channel
from eventlog.problems import internal_error_response, problem_for, problem_response
from eventlog.structured_logs import fields
from sse_service.hub import Hub, Subscriber
from sse_service.settings import STREAM_PATH, ServiceSettings

logger = logging.getLogger("sse_service.app")  # one logger for the service's request lines

FINISH_TIMEOUT_SECONDS = 1.0
"""How long a cut-off stream may take to end its response before the connection is closed."""

TRACE_HEADER = b"x-amzn-trace-id"
"""The load balancer's id of a request: the ``request_id`` of this service's log lines."""

STREAM_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # proxies that buffer by default (nginx) pass it through
]

_PREFIX, _SUFFIX = STREAM_PATH.split("{channel}")
_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}

_left_unfinished = contextvars.ContextVar("sse_stream_left_unfinished", default=False)
"""Set in a request's context when its stream was cut and the socket would not take the end."""

UNFINISHED_RESPONSE_LINE = "ASGI callable returned without completing response"


def not_a_stream_cut_on_purpose(record: logging.LogRecord) -> bool:
    """A filter for uvicorn's ``uvicorn.error`` logger.

    When an application returns in the middle of a response, uvicorn logs an error in the
    request's own context, right after the application returns. A stream cut for falling
    behind does that on purpose (its socket would not take the end) and has already said
    so in a warning with its channel, so uvicorn's line is dropped for it alone: an
    incomplete response anywhere else is still an error.
    """
    return not (_left_unfinished.get() and record.getMessage().startswith(UNFINISHED_RESPONSE_LINE))


def stream_channel(path: str) -> str | None:
    """The channel of a stream path (``STREAM_PATH``), or None for any other path."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    channel = path[len(_PREFIX) : len(path) - len(_SUFFIX)]
    return channel if channel and "/" not in channel else None


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


# --- Knowing that the client left, without a task -----------------------------------------------


class DisconnectWatch:
    """Call ``on_disconnect`` once the server's ``receive`` says ``http.disconnect``.

    A task awaiting ``receive()`` would do, at a task per stream. Instead the
    ``receive()`` coroutine is run here until it first waits: uvicorn's waits on a
    future (its request cycle's event), and a done-callback on that future resumes the
    coroutine when the connection is lost. A server whose ``receive`` waits on
    anything else gets the listener task after all.
    """

    __slots__ = ("_on_disconnect", "_pending", "_receive", "_task")

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._pending: Coroutine[Any, Any, Message] | None = None
        self._task: asyncio.Task[None] | None = None
        self._listen(receive())

    def _listen(self, receiving: Awaitable[Message]) -> None:
        """Run ``receiving`` on until it waits again or returns the next message."""
        while isinstance(receiving, Coroutine):
            try:
                waiting = receiving.send(None)
            except StopIteration as done:
                message: Message = done.value
                if message["type"] == "http.disconnect":
                    self._on_disconnect()
                    return
                receiving = self._receive()  # a request body chunk: wait for the next message
                continue
            if asyncio.isfuture(waiting):
                self._pending = receiving
                waiting.add_done_callback(self._resume)
                return
            # Waiting on something else: abandon this receive, listen in a task instead.
            receiving.close()
            receiving = self._receive()
            break
        self._task = asyncio.get_running_loop().create_task(self._listen_in_task(receiving))

    def _resume(self, _future: asyncio.Future[Any]) -> None:
        receiving, self._pending = self._pending, None
        if receiving is not None:
            self._listen(receiving)

    async def _listen_in_task(self, receiving: Awaitable[Message]) -> None:
        while (await receiving)["type"] != "http.disconnect":
            receiving = self._receive()
        self._on_disconnect()

    def close(self) -> None:
        """Stop watching (the stream ended); the suspended ``receive`` is closed."""
        coroutine, self._pending = self._pending, None
        if coroutine is not None:
            coroutine.close()
        if self._task is not None:
            self._task.cancel()


class _Resumed:
    """A coroutine that was run until it first waited, to be awaited from there on."""

    __slots__ = ("_coroutine", "_waiting")

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coroutine = coroutine
        self._waiting = waiting  # what it waits on: the task now waits on it

    def __await__(self) -> Generator[Any, Any, None]:
        waiting = self._waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:  # cancelled: the coroutine handles it
                step = partial(self._coroutine.throw, exc)
            else:
                step = partial(self._coroutine.send, sent)
            try:
                waiting = step()
            except StopIteration:
                return

    def close(self) -> None:
        self._coroutine.close()


# --- The route ----------------------------------------------------------------------------------


def _cursor(request: Request) -> int | None:
    """``Last-Event-ID`` (set by a reconnecting EventSource) wins over ``after``."""
    last_event_id = request.headers.get("last-event-id", "").strip()
    if last_event_id:
        return parse_cursor(last_event_id)
    after = request.query_params.get("after")
    return None if after is None else parse_cursor(after)


class StreamRoute:
    """``GET``/``HEAD`` of ``STREAM_PATH``: the gate, the stream cap, then the stream."""

    def __init__(
        self, *, hub: Hub, settings: ServiceSettings, gate: StreamGate, cors: CORSMiddleware
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.gate = gate
        self.cors = cors
        self.retry_after = str(max(1, math.ceil(settings.retry_milliseconds / 1000)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send, channel: str) -> None:
        request = Request(scope, receive)
        # The CORS headers go on the response start only; later messages go straight out.
        start_send = partial(self.cors.send, send=send, request_headers=request.headers)
        try:
            # The gate first: a caller without a valid token learns nothing, not even that
            # its channel name or cursor is malformed.
            grant = await self.gate(request, channel)
            validate_channel(channel)
            cursor = _cursor(request)
        except Exception as exc:
            refusal = problem_for(exc)
            await (refusal or internal_error_response())(scope, receive, start_send)
            if refusal is None:
                raise  # the server logs it
            return
        hub = self.hub
        # From here to hub.admit there is no await, so concurrent requests cannot
        # all pass the check and overshoot the cap.
        if hub.draining:
            await self._unavailable("draining", "this server is shutting down; reconnect")(
                scope, receive, start_send
            )
            return
        if hub.open_streams >= self.settings.max_streams:
            detail = f"this server holds its maximum of {self.settings.max_streams}"
            await self._unavailable("too_many_streams", detail)(scope, receive, start_send)
            return
        # A fresh list: the CORS hook adds its headers to it.
        start = {"type": "http.response.start", "status": 200, "headers": list(STREAM_HEADERS)}
        del request  # not kept for the stream's life
        if scope["method"] == "HEAD":
            # Headers only: an endless body would never complete a HEAD.
            await start_send(start)
            await send(_END)
            return
        subscriber = hub.admit(channel)
        hub.end_after(subscriber, max_seconds=self.settings.max_stream_seconds)
        if grant.expires_at is not None:
            hub.expire_at(subscriber, expires_at=grant.expires_at)
        try:
            await start_send(start)
            del start, start_send
            await self._stream(subscriber, cursor, send, receive, scope)
        finally:
            hub.leave(subscriber)
            # One line per stream, when it ends: why (the client left, or a CloseReason).
            reason = subscriber.reason or "client_left"
            logger.info("stream ended: %s", reason, extra=self._fields(scope, subscriber, reason))

    async def _stream(
        self, subscriber: Subscriber, cursor: int | None, send: Send, receive: Receive, scope: Scope
    ) -> None:
        """Write the hub's stream; a cut (``Subscriber.cut``) ends even a blocked write."""
        task = asyncio.current_task()
        assert task is not None
        writing = cut = False

        def on_cut() -> None:
            nonlocal cut
            if writing and not cut:
                cut = True
                task.cancel()

        pending: Awaitable[None] | None = None
        failed: BaseException | None = None

        def write_now(body: bytes) -> bool:
            # Run the server's send until it first waits: uvicorn's returns at once
            # unless the socket is backed up, so most writes cost no task switch.
            nonlocal pending, failed
            sending = send({"type": "http.response.body", "body": body, "more_body": True})
            if not isinstance(sending, Coroutine):
                pending = sending  # not a coroutine: the stream's task awaits it
                return False
            try:
                waiting = sending.send(None)
            except StopIteration:
                return True
            except BaseException as exc:  # raised in the stream's task, not the feed's
                failed = exc
                return False
            pending = _Resumed(sending, waiting)
            return False

        async def write(chunk: bytes) -> bool:
            """Write ``chunk`` after any direct write left pending; False if cut."""
            nonlocal writing, pending
            writing = True
            try:
                if failed is not None:
                    raise failed
                if pending is not None:
                    finishing, pending = pending, None
                    await finishing
                    subscriber.write_pending = False
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except asyncio.CancelledError:
                if not cut:
                    raise
                task.uncancel()
                return False
            finally:
                writing = False
            return True

        subscriber.on_cut = on_cut
        subscriber.write_now = write_now
        watch = DisconnectWatch(receive, partial(subscriber.close, "client_left"))
        body = self.hub.stream(subscriber, cursor=cursor)
        try:
            async for chunk in body:
                if not await write(chunk):
                    break
            if not cut and await write(b""):
                await send(_END)
                return
            if subscriber.reason == "overflow":
                logger.warning(
                    "a %r stream could not keep up: disconnected",
                    scope["path"],
                    extra=self._fields(scope, subscriber, "overflow"),
                )
            # End the response if the socket takes it soon; else uvicorn closes the
            # connection (and ``not_a_stream_cut_on_purpose`` drops its error line).
            try:
                async with asyncio.timeout(FINISH_TIMEOUT_SECONDS):
                    await send(_END)
            except TimeoutError:
                _left_unfinished.set(True)
        finally:
            subscriber.on_cut = subscriber.write_now = None
            if isinstance(pending, _Resumed):
                pending.close()
            watch.close()
            await body.aclose()

    def _unavailable(self, code: str, detail: str) -> Response:
        return problem_response(
            status=HTTPStatus.SERVICE_UNAVAILABLE,
            code=code,
            detail=detail,
            headers={"Retry-After": self.retry_after},
        )

    @staticmethod
    def _fields(scope: Scope, subscriber: Subscriber, outcome: str) -> dict[str, object]:
        trace = Headers(scope=scope).get(TRACE_HEADER.decode())
        return fields(
            transport="sse", outcome=outcome, request_id=trace, channel=subscriber.channel
        )
