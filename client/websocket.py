"""WebSocket: one connection per transport, shared by its subscriptions and publishes.

The connection carries JSON frames both ways (``websocket_api.frames``): the
client sends ``subscribe``/``unsubscribe``/``publish``/``ping`` actions, the server
``subscribed``, ``event``, ``reset``, ``published``, ``pong`` and ``error``. One
reader task owns the socket and routes each frame: channel frames to that
channel's subscription (whose pump runs the sequencer, so a slow backfill of one
channel does not stall the others), ``published``/``error``/``pong`` to the
request waiting for them.

What API Gateway makes necessary, and how it is handled:

- *No ordering across invocations.* Every action is its own Lambda invocation and
  every event frame a ``post_to_connection`` from a concurrent fan-out, so frames can
  arrive out of order, twice (backlog overlapping live) or not at all (a failed
  post). The sequencer drops duplicates and backfills gaps over the log's HTTP API
  (``client.log_api``: the endpoints file's ``log_api_url``, the polling API's or the
  SSE service's); with neither deployed, over the socket itself, one ``read`` action
  per page (``_read_page``).
  Frames already waiting in the socket buffer are sorted before the sequencer sees
  them, so a reordering within a burst costs no backfill. A lost *last* event is only
  noticed when the next event arrives, or at the next reconnect.
- *Replies in any order.* The handlers of a connection's frames are separate
  invocations, so their replies can overtake each other: an ``error`` for the
  second publish may come before the ``published`` of the first. Every
  ``subscribe`` and ``publish`` therefore carries an ``id`` of the client's
  choosing, which the server echoes in its reply, and replies are matched by it.
  A server that echoes no id (one older than the protocol's ids) still works:
  then a ``published`` frame goes to the oldest pending publish of the same
  channel with equal data, a ``subscribed`` frame to its channel, and an ``error``
  frame to the oldest request still waiting, which is right only while replies
  come in order; the client checks what it can itself (channel names, JSON values)
  so that few requests can fail there.
- *Idle and lifetime limits.* API Gateway closes a connection idle for 10 minutes,
  and any connection after 2 hours. The transport sends ``{"action": "ping"}`` every
  ``keepalive_seconds`` and treats a missing ``pong`` as a dead connection. Whatever
  closes the connection, the transport reconnects with backoff and subscribes every
  channel again from its position; a publish in flight at that moment fails with
  ``connection_lost``, since the client cannot know whether it was appended.
- *Tokens in the URL.* A browser cannot set headers on a WebSocket, so the token
  goes in ``?token=``, checked once by the ``$connect`` authorizer; the URL is
  therefore never logged. Each connect asks the token source again, so a reconnect
  after the token expired carries a fresh one (``client.auth``). When the token
  expires, the server sends ``expired`` and closes the connection; the transport
  reconnects at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from client.auth import Credentials, TokenSource
from client.base import (
    TRANSIENT_ERRORS,
    Ready,
    ResetSignal,
    Signal,
    Subscription,
    Transport,
    backoff_seconds,
    checked_channel,
    event_from_json,
)
from client.config import ClientOptions
from client.errors import (
    ClientError,
    close_cause,
    connection_lost,
    protocol_error,
    unreachable,
)
from client.log_api import LogApi, page_from_json
from client.sequencer import Backfill, Page, Reset
from client.stats import TransportStats
from eventlog.errors import EventLogError
from eventlog.events import Event, encode_json

logger = logging.getLogger("client")

PING_FRAME = encode_json({"action": "ping"})

RECONNECTABLE: tuple[type[BaseException], ...] = (InvalidHandshake, *TRANSIENT_ERRORS)
"""Failures of a connection attempt (other than a refusal) that a later attempt may not have."""


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``token=`` added to its query."""
    if not token:
        return url
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(eq=False)
class _Request:
    """A frame sent that expects an answer (``subscribed``/``published``, or ``error``)."""

    kind: Literal["subscribe", "publish", "read"]
    id: str
    """Sent as the frame's ``id`` and echoed in the reply: unique on this transport."""
    channel: str
    data: str | None = None
    """A publish's data, encoded."""
    future: asyncio.Future[Any] | None = None
    """A publish's ``Event``, a read's ``Page``."""
    subscription: WebSocketSubscription | None = field(default=None, repr=False)


class WebSocketSubscription(Subscription):
    """Fed by the transport's reader; its pump runs the sequencer."""

    def __init__(self, *, transport: WebSocketTransport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._transport = transport
        self.inbound: asyncio.Queue[Signal | BaseException] = asyncio.Queue()

    async def drop_connection(self) -> None:
        """Drop the transport's connection: every subscription on it resumes."""
        await self._transport.drop_connection()

    async def _begin(self) -> None:
        await self._transport._register(self)

    async def _end(self) -> None:
        await self._transport._unregister(self)

    async def _serve(self) -> None:
        while True:
            batch = [await self.inbound.get()]
            while not self.inbound.empty():
                batch.append(self.inbound.get_nowait())
            events: list[Event] = []
            for item in batch:
                if isinstance(item, Event):
                    events.append(item)
                    continue
                if events:
                    await self._emit_events(events)
                    events = []
                if isinstance(item, BaseException):
                    raise item
                await self._emit(item)
            if events:
                await self._emit_events(events)


class WebSocketTransport(Transport):
    """Subscribe and publish over one WebSocket connection."""

    name = "websocket"

    def __init__(
        self,
        *,
        url: str,
        log_api_url: str | None,
        token: TokenSource,
        options: ClientOptions,
    ) -> None:
        super().__init__(options=options)
        self._url = url
        self._credentials = Credentials(token)
        self.api = (
            None
            if log_api_url is None
            else LogApi(base_url=log_api_url, token=token, options=options)
        )
        self.by_channel: dict[str, WebSocketSubscription] = {}
        self.unmatched_errors: list[ClientError] = []
        """``error`` frames that arrived when no request was waiting."""
        self._outstanding: deque[_Request] = deque()
        self._request_ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._pong = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: ClientError | None = None

    # --- the connection ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; a refused handshake (401, 403) raises ``ClientError`` here."""
        ws = await self._connect()
        self._supervisor = asyncio.create_task(self._supervise(ws), name="websocket-connection")

    async def _connect(self) -> ClientConnection:
        # Asked at every connect: a provider hands out a fresh token for a reconnect.
        url = with_token(self._url, await self._credentials.token())
        try:
            ws = await connect(
                url,
                # Keep-alive is the protocol's own ping action (see the module docstring).
                ping_interval=None,
                # API Gateway does not negotiate permessage-deflate; neither does this client,
                # so a local server behaves like it and byte counts are payload sizes.
                compression=None,
                open_timeout=self.options.request_timeout_seconds,
            )
        except InvalidStatus as exc:
            self.stats.refusals += 1
            response = exc.response
            raise ClientError.from_http(
                status=response.status_code,
                headers=response.headers,
                body=bytes(response.body or b""),
            ) from None
        except RECONNECTABLE as exc:
            raise unreachable(exc, url=self._url) from exc  # the URL without its token
        self.stats.connections += 1
        return ws

    async def _supervise(self, ws: ClientConnection) -> None:
        try:
            await self._reconnecting(ws)
        except Exception as exc:
            # A fault in this client, not the network: fail loudly rather than hang.
            logger.exception("websocket: the connection task failed")
            self._fail(ClientError(status=None, code="client_failure", detail=repr(exc)))

    async def _reconnecting(self, ws: ClientConnection) -> None:
        failures = 0
        while True:
            await self._run_connection(ws)
            if self._closed:
                return
            while True:
                await asyncio.sleep(backoff_seconds(failures, self.options))
                try:
                    ws = await self._connect()
                    break
                except ClientError as exc:
                    if not exc.retryable:
                        self._fail(exc)
                        return
                    failures += 1
                    logger.warning("websocket: reconnecting failed: %s", exc)
            failures = 0
            self.stats.reconnects += 1
            for subscription in self.by_channel.values():
                subscription.stats.connections += 1
                subscription.stats.reconnects += 1

    async def _run_connection(self, ws: ClientConnection) -> None:
        self._ws = ws
        keepalive = asyncio.create_task(self._keepalive(ws), name="websocket-keepalive")
        try:
            # Again after a reconnect: each channel from its position.
            for subscription in list(self.by_channel.values()):
                await self._send_subscribe(subscription, ws)
            self._connected.set()
            async for raw in ws:
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        finally:
            self._connected.clear()
            self._ws = None
            keepalive.cancel()
            with suppress(asyncio.CancelledError):
                await keepalive
            # Nothing sent on this connection will be answered now: pending publishes fail,
            # and subscribes are sent again by the reconnect (a stale entry here would
            # otherwise take the blame for a later, unrelated error frame).
            closed = close_cause(ws.close_code, ws.close_reason)
            self._abandon_waiting(connection_lost(None, what="the publish", close=closed))
            self._outstanding.clear()
            with suppress(Exception):
                await ws.close()

    async def _keepalive(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.options.keepalive_seconds)
            self._pong.clear()
            try:
                await self._send(ws, PING_FRAME)
                await asyncio.wait_for(self._pong.wait(), self.options.pong_timeout_seconds)
            except ConnectionClosed:
                return
            except TimeoutError:
                logger.warning("websocket: no pong; reconnecting")
                ws.transport.abort()
                return

    async def drop_connection(self) -> None:
        """Cut the connection as a network failure would; the transport reconnects."""
        self._abort()

    def _abort(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    def _fail(self, error: ClientError) -> None:
        """The connection cannot come back: end every subscription and pending publish."""
        self._failure = error
        for subscription in self.by_channel.values():
            subscription.inbound.put_nowait(error)
        self._abandon_waiting(error)

    def _abandon_waiting(self, error: ClientError) -> None:
        """Fail the publishes and reads waiting for a reply that will not come now."""
        for request in list(self._outstanding):
            if request.kind in ("publish", "read"):
                self._outstanding.remove(request)
                if request.future is not None and not request.future.done():
                    request.future.set_exception(error)

    async def _send(
        self, ws: ClientConnection, frame: str, *, stats: TransportStats | None = None
    ) -> None:
        size = len(frame.encode())
        for counted in (self.stats, stats):
            if counted is not None:
                counted.requests += 1
                counted.bytes_sent += size
        await ws.send(frame)

    # --- frames in -----------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        size = len(raw.encode() if isinstance(raw, str) else raw)
        self.stats.bytes_received += size
        try:
            frame = json.loads(raw)
        except ValueError:
            logger.warning("websocket: a frame that is not JSON was ignored")
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        try:
            if kind in ("event", "subscribed", "reset"):
                self._channel_frame(kind, frame, size)
            elif kind == "published":
                self._published(event_from_json(frame.get("event")), _echoed_id(frame))
            elif kind == "page":
                self._page(frame)
            elif kind == "pong":
                self._pong.set()
            elif kind == "error":
                self._error(frame)
            elif kind == "expired":
                # The server stopped delivering and closes the connection after this frame.
                # Reconnecting at once asks the token source again, and every subscription
                # resumes from its cursor, so nothing is lost in between.
                logger.info("websocket: the token expired; reconnecting with a fresh one")
                self._abort()
            # Anything else (e.g. "unsubscribed") needs nothing: unknown types are ignored.
        except ClientError as exc:
            logger.warning("websocket: a %r frame was ignored: %s", kind, exc.detail)

    def _channel_frame(self, kind: str, frame: dict[str, Any], size: int) -> None:
        signal: Signal
        if kind == "event":
            signal = event_from_json(frame.get("event"))
            channel = signal.channel
        else:
            named = frame.get("channel")
            number = frame.get("head" if kind == "subscribed" else "oldest")
            if not isinstance(named, str) or not isinstance(number, int):
                raise protocol_error(f"a {kind} frame without its channel or seq")
            channel = named
            signal = Ready(number) if kind == "subscribed" else ResetSignal(number)
        subscription = self.by_channel.get(channel)
        if kind == "subscribed":
            self._take_request("subscribe", _echoed_id(frame), lambda r: r.channel == channel)
        if subscription is None:
            return  # a channel this client has left
        subscription.stats.bytes_received += size
        subscription.inbound.put_nowait(signal)

    def _take_request(
        self, kind: str | None, request_id: str | None, matches: Callable[[_Request], bool]
    ) -> _Request | None:
        """The pending request a reply answers: by its echoed id, else the first that
        ``matches`` (of ``kind``, when one is given)."""
        for request in self._outstanding:
            if request_id is not None:
                found = request.id == request_id
            else:
                found = kind in (None, request.kind) and matches(request)
            if found:
                self._outstanding.remove(request)
                return request
        return None

    def _published(self, event: Event, request_id: str | None) -> None:
        # Compared as encoded JSON: as Python values, true == 1 == 1.0.
        encoded = encode_json(event.data)
        request = self._take_request(
            "publish", request_id, lambda r: r.channel == event.channel and r.data == encoded
        ) or self._take_request("publish", request_id, lambda r: r.channel == event.channel)
        if request is None or request.future is None or request.future.done():
            logger.warning("websocket: a published frame matched no pending publish")
            return
        request.future.set_result(event)

    def _page(self, frame: dict[str, Any]) -> None:
        page = page_from_json(frame)
        channel = frame.get("channel")
        request = self._take_request("read", _echoed_id(frame), lambda r: r.channel == channel)
        if request is None or request.future is None or request.future.done():
            logger.warning("websocket: a page frame matched no pending read")
            return
        request.future.set_result(page)

    def _error(self, frame: dict[str, Any]) -> None:
        error = ClientError(
            status=None,
            code=str(frame.get("code") or "error"),
            detail=str(frame.get("message") or "the server refused a request"),
        )
        self.stats.refusals += 1
        # Without an echoed id (an older server, or a frame it could not read the id of),
        # the oldest request still waiting: right while replies come in order.
        request = self._take_request(None, _echoed_id(frame), lambda _: True)
        if request is None:
            logger.warning("websocket: error frame with no request waiting: %s", error)
            self.unmatched_errors.append(error)
            return
        if request.future is not None and not request.future.done():
            request.future.set_exception(error)
        if request.subscription is not None:
            request.subscription.stats.refusals += 1
            if self.by_channel.get(request.channel) is request.subscription:
                del self.by_channel[request.channel]
            request.subscription.inbound.put_nowait(error)

    # --- subscriptions -------------------------------------------------------------------------

    def _new_subscription(
        self, *, channel: str, after: int | None, on_reset: Callable[[Reset], None] | None
    ) -> Subscription:
        if channel in self.by_channel:
            raise ValueError(
                f"already subscribed to {channel!r} on this connection (the server would "
                "replace that subscription); open another transport for a second one"
            )
        stats = TransportStats()
        return WebSocketSubscription(
            transport=self,
            channel=channel,
            after=after,
            backfill=self._socket_backfill(stats) if self.api is None else self.api.backfill(stats),
            stats=stats,
            options=self.options,
            on_reset=on_reset,
        )

    async def _register(self, subscription: WebSocketSubscription) -> None:
        if self._failure is not None:
            raise self._failure
        self.by_channel[subscription.channel] = subscription
        subscription.stats.connections += 1
        ws = self._ws
        if ws is not None and self._connected.is_set():
            await self._send_subscribe(subscription, ws)
        # Else the reconnect in progress subscribes it.

    async def _send_subscribe(
        self, subscription: WebSocketSubscription, ws: ClientConnection
    ) -> None:
        request = _Request(
            "subscribe", self._new_id(), subscription.channel, subscription=subscription
        )
        frame: dict[str, Any] = {
            "action": "subscribe",
            "channel": subscription.channel,
            "id": request.id,
        }
        if subscription.position is not None:
            frame["after"] = subscription.position
        self._outstanding.append(request)
        try:
            await self._send(ws, encode_json(frame), stats=subscription.stats)
        except ConnectionClosed:
            # The reader sees the close too, and the reconnect subscribes again.
            with suppress(ValueError):
                self._outstanding.remove(request)

    async def _unregister(self, subscription: WebSocketSubscription) -> None:
        if self.by_channel.get(subscription.channel) is not subscription:
            return
        del self.by_channel[subscription.channel]
        for request in list(self._outstanding):
            if request.subscription is subscription:
                self._outstanding.remove(request)
        ws = self._ws
        if ws is not None and not self._closed:
            frame = encode_json({"action": "unsubscribe", "channel": subscription.channel})
            with suppress(ConnectionClosed):
                await self._send(ws, frame, stats=subscription.stats)

    def _new_id(self) -> str:
        return str(next(self._request_ids))

    # --- publish -------------------------------------------------------------------------------

    async def publish(self, channel: str, data: Any) -> Event:
        """Publish over the socket and wait for the ``published`` acknowledgement."""
        checked_channel(channel)
        request_id = self._new_id()
        try:
            frame = encode_json(
                {"action": "publish", "channel": channel, "data": data, "id": request_id}
            )
        except EventLogError as exc:
            raise ClientError.refused_locally(exc) from None
        expected = encode_json(json.loads(frame)["data"])  # as the server will echo it
        loop = asyncio.get_running_loop()
        request = _Request(
            "publish", request_id, channel, data=expected, future=loop.create_future()
        )
        event: Event = await self._ask(
            request, frame, what="the publish", awaited="acknowledgement of the publish"
        )
        return event

    def _socket_backfill(self, stats: TransportStats) -> Backfill:
        """Reads for a sequencer's gaps over the socket, counted in ``stats``: a deployment
        with neither the polling API nor the SSE service has no other log API."""

        async def read(channel: str, after: int) -> Page:
            return await self._read_page(channel, after, stats=stats)

        return read

    async def _read_page(self, channel: str, after: int, *, stats: TransportStats) -> Page:
        """One page of the log after ``after`` (the ``read`` action and its ``page`` reply).

        A read cut off by a lost connection is asked again once the transport has
        reconnected: a gap left open would end the subscription.
        """
        loop = asyncio.get_running_loop()
        while True:
            request_id = self._new_id()
            frame = encode_json(
                {"action": "read", "channel": channel, "after": after, "id": request_id}
            )
            request = _Request("read", request_id, channel, future=loop.create_future())
            try:
                page: Page = await self._ask(
                    request, frame, what="the read", awaited="page", stats=stats
                )
            except ClientError as exc:
                if exc.code == "connection_lost":
                    continue
                stats.refusals += 1
                raise
            return page

    async def _ask(
        self,
        request: _Request,
        frame: str,
        *,
        what: str,
        awaited: str,
        stats: TransportStats | None = None,
    ) -> Any:
        """Send ``frame`` once connected and wait for the reply that ``request`` expects."""
        try:
            async with asyncio.timeout(self.options.request_timeout_seconds):
                while True:
                    if self._failure is not None:
                        raise self._failure
                    if self._closed:
                        raise RuntimeError("the transport is closed")
                    await self._connected.wait()
                    ws = self._ws
                    if ws is not None:
                        break
                self._outstanding.append(request)
                try:
                    await self._send(ws, frame, stats=stats)
                except ConnectionClosed:
                    closed = close_cause(ws.close_code, ws.close_reason)
                    raise connection_lost(None, what=what, close=closed) from None
                assert request.future is not None
                return await request.future
        except TimeoutError:
            raise ClientError(
                status=None,
                code="timeout",
                detail=f"no {awaited} within {self.options.request_timeout_seconds:g} s",
            ) from None
        finally:
            with suppress(ValueError):
                self._outstanding.remove(request)

    async def _end(self) -> None:
        ws = self._ws
        if ws is not None:
            with suppress(Exception):
                await ws.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with suppress(asyncio.CancelledError):
                await self._supervisor
        self._abandon_waiting(connection_lost(None, what="the publish"))
        if self.api is not None:
            await self.api.aclose()


def _echoed_id(frame: dict[str, Any]) -> str | None:
    """The request id a server frame echoes (None: a server that echoes none)."""
    value = frame.get("id")
    return value if isinstance(value, str) else None
