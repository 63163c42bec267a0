"""Server-Sent Events: one long-lived GET per subscription, read line by line.

``GET /channels/{c}/stream?after=N`` opens the stream; the reply is
``text/event-stream``, parsed by ``client.sse_parser``. What each message means:

- the first message is the preamble: ``retry:`` (the reconnect delay, honored) and,
  for a live-only stream, ``id:`` with the head it starts after (``Ready``);
- ``id: <seq>`` + ``data: <Event JSON>``: an event;
- ``event: reset`` + ``data: {"oldest": N}``: the history before N is gone;
- ``event: expired``: the server ended the stream because its token expired: reconnect
  at once, with a fresh token if the transport has a provider (``client.auth``); a
  refused reconnect (401, the same expired token) ends the subscription;
- ``:`` comments are heartbeats, counted in ``stats.heartbeats``; other event types
  are ignored.

A stream that ends, breaks, or stays silent for three heartbeat intervals is
reopened after the ``retry`` delay with ``Last-Event-ID: <position>``, like a
browser's ``EventSource``; unlike one, a ``503`` with ``Retry-After`` (a full or
draining server) is waited out and retried instead of ending the subscription.

SSE is one-way, so this transport publishes, and fills any gap, with the log's HTTP API
(``client.log_api``), which the SSE service serves beside its streams: one URL, the
endpoints file's ``SseUrl``, for all three.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from client.auth import Credentials, TokenSource
from client.base import (
    Ready,
    ReconnectingSubscription,
    ResetSignal,
    Subscription,
    Transport,
    event_from_json,
)
from client.config import SSE_DEFAULT_RETRY_SECONDS, ClientOptions
from client.errors import ClientError, protocol_error
from client.log_api import LogApi, count_request, count_response_head
from client.sequencer import Reset
from client.sse_parser import SseMessage, SseParser
from client.stats import TransportStats
from eventlog.events import Event


class _StreamExpired(Exception):
    """The server ended the stream with ``event: expired``."""


def _seq_or_none(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else None


class SseSubscription(ReconnectingSubscription):
    def __init__(self, *, stream_url: str, token: TokenSource, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._url = stream_url
        self._retry_seconds = SSE_DEFAULT_RETRY_SECONDS
        self._opened = False
        self._expired = False
        self._credentials = Credentials(token)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                self.options.request_timeout_seconds,
                read=self.options.sse_read_timeout_seconds,
            ),
        )

    def _close_delay(self) -> float:
        if self._expired:  # the token ran out, not the server: reconnect at once
            self._expired = False
            return 0.0
        return self._retry_seconds

    def _min_error_delay(self) -> float:
        return self._retry_seconds

    async def _end(self) -> None:
        await self._client.aclose()

    async def _session(self) -> None:
        position = self.position
        params: dict[str, str] = {}
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if position is not None:
            # The first request names its cursor; a reconnect says where it got to, as a
            # browser does (the server lets Last-Event-ID win over after).
            if self._opened:
                headers["Last-Event-ID"] = str(position)
            else:
                params["after"] = str(position)
        self._opened = True
        request = self._client.build_request("GET", self._url, params=params, headers=headers)
        await self._credentials.authorize(request)
        count_request(self.stats, request)
        response = await self._client.send(request, stream=True)
        try:
            count_response_head(self.stats, response)
            if response.status_code != 200:
                self.stats.refusals += 1
                body = await response.aread()
                self.stats.bytes_received += len(body)
                raise ClientError.from_http(
                    status=response.status_code, headers=response.headers, body=body
                )
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
            if media_type != "text/event-stream":
                raise protocol_error(f"the stream answered {media_type or 'no content type'}")
            await self._read(response, live_only=position is None)
        except _StreamExpired:
            self._expired = True
            self.stats.expirations += 1
            return
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response, *, live_only: bool) -> None:
        parser = SseParser()
        first = True
        async for chunk in response.aiter_bytes():
            self.stats.bytes_received += len(chunk)
            heartbeats = parser.comments
            try:
                messages = parser.feed(chunk)
            except ValueError as exc:
                raise protocol_error(str(exc)) from None
            self.stats.heartbeats += parser.comments - heartbeats
            for message in messages:
                if message.retry is not None:
                    self._retry_seconds = message.retry / 1000
                if first:
                    first = False
                    if message.data is None and message.event is None:
                        await self._emit(Ready(_seq_or_none(message.id) if live_only else None))
                        continue
                    await self._emit(Ready(None))
                await self._handle(message)

    async def _handle(self, message: SseMessage) -> None:
        kind = message.event or "message"
        if kind == "message":
            if message.data is None:
                return  # an id or retry alone: nothing to deliver
            try:
                event = event_from_json(json.loads(message.data))
            except ValueError:
                raise protocol_error(f"an event's data is not JSON: {message.data:.200}") from None
            await self._emit(event)
        elif kind == "reset":
            try:
                oldest = json.loads(message.data or "")["oldest"]
            except (ValueError, KeyError, TypeError):
                oldest = None
            if not isinstance(oldest, int) or isinstance(oldest, bool):
                raise protocol_error(f"a reset without an oldest seq: {message.data!r:.200}")
            await self._emit(ResetSignal(oldest))
        elif kind == "expired":
            raise _StreamExpired


class SseTransport(Transport):
    """Subscribe over SSE; publish over the polling API."""

    name = "sse"

    def __init__(
        self,
        *,
        sse_url: str,
        token: TokenSource,
        options: ClientOptions,
    ) -> None:
        super().__init__(options=options)
        self._sse_url = sse_url.rstrip("/")
        self._token = token
        self.api = LogApi(base_url=sse_url, token=token, options=options)

    def _new_subscription(
        self, *, channel: str, after: int | None, on_reset: Callable[[Reset], None] | None
    ) -> Subscription:
        stats = TransportStats()
        return SseSubscription(
            stream_url=f"{self._sse_url}/channels/{channel}/stream",
            token=self._token,
            channel=channel,
            after=after,
            backfill=self.api.backfill(stats),
            stats=stats,
            options=self.options,
            on_reset=on_reset,
        )

    async def publish(self, channel: str, data: Any) -> Event:
        return await self.api.publish(channel, data, stats=self.stats)

    async def _end(self) -> None:
        await self.api.aclose()
