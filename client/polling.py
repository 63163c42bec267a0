"""Polling: the stateless transport, one HTTP request at a time.

The client carries its cursor. Each read is ``GET /channels/{c}/events?after=N&wait=W``:
a long poll that the server answers as soon as there is an event, or empty when
``wait`` runs out; the client then asks again after the reply's ``next``. A repeated
read sends the last ``ETag`` in ``If-None-Match``, so an unchanged empty reply is a
bodiless 304. The first read of a session does not wait, so ``subscribe()``
returns at once and a live-only subscription learns the head (the reply's ``next``).

``PollingApi`` is also what the other transports use to publish (SSE) and to
backfill gaps (SSE, WebSocket): the log, read over HTTP, is the record.
"""

from __future__ import annotations

import asyncio
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
    backoff_seconds,
    checked_channel,
    event_from_json,
)
from client.config import ClientOptions
from client.errors import (
    NOTHING_WRITTEN_STATUSES,
    ClientError,
    connection_lost,
    protocol_error,
    unreachable,
)
from client.sequencer import Backfill, Page, Reset
from client.stats import TransportStats, header_bytes
from eventlog.errors import EventLogError
from eventlog.events import Event, encode_json


def count_request(stats: TransportStats, request: httpx.Request) -> None:
    stats.requests += 1
    request_line = len(request.method) + len(request.url.raw_path) + 12  # "M PATH HTTP/1.1\r\n"
    try:
        body = len(request.content)
    except httpx.RequestNotRead:  # a streamed body: not sent by this client
        body = 0
    stats.bytes_sent += request_line + header_bytes(request.headers.items()) + body


def count_response_head(stats: TransportStats, response: httpx.Response) -> None:
    status_line = len(response.reason_phrase) + 15  # "HTTP/1.1 200 OK\r\n"
    stats.bytes_received += status_line + header_bytes(response.headers.items())


def parse_page(body: bytes) -> Page:
    try:
        obj = json.loads(body)
        events = [event_from_json(event) for event in obj["events"]]
        next_cursor, reset, oldest = obj["next"], obj.get("reset", False), obj.get("oldest")
    except (ValueError, KeyError, TypeError) as exc:
        raise protocol_error(f"not a read reply ({exc})") from None
    if not isinstance(next_cursor, int) or not isinstance(reset, bool):
        raise protocol_error("a read reply needs an integer next and a boolean reset")
    if oldest is not None and not isinstance(oldest, int):
        raise protocol_error("a read reply's oldest must be an integer or null")
    return Page(events=events, next=next_cursor, reset=reset, oldest=oldest)


class PollingApi:
    """The polling API's publish and read, over one ``httpx.AsyncClient``."""

    def __init__(self, *, base_url: str, token: TokenSource, options: ClientOptions) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = options
        self._credentials = Credentials(token)
        self._client = httpx.AsyncClient(timeout=options.request_timeout_seconds)

    def events_url(self, channel: str) -> str:
        return f"{self.base_url}/channels/{channel}/events"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, request: httpx.Request, stats: TransportStats) -> httpx.Response:
        await self._credentials.authorize(request)
        count_request(stats, request)
        try:
            response = await self._client.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise unreachable(exc, url=request.url) from exc
        except httpx.TransportError as exc:
            raise connection_lost(exc, what=f"the {request.method}") from exc
        count_response_head(stats, response)
        stats.bytes_received += len(response.content)
        return response

    async def publish(self, channel: str, data: Any, *, stats: TransportStats) -> Event:
        """POST the event; retry only a refusal that promises nothing was written."""
        checked_channel(channel)
        try:
            body = encode_json({"data": data}).encode()
        except EventLogError as exc:
            raise ClientError.refused_locally(exc) from None
        attempt = 0
        while True:
            request = self._client.build_request(
                "POST",
                self.events_url(channel),
                content=body,
                headers={"Content-Type": "application/json"},
            )
            response = await self._send(request, stats)
            if response.status_code == 201:
                try:
                    return event_from_json(json.loads(response.content))
                except ValueError:
                    raise protocol_error("the publish reply is not JSON") from None
            stats.refusals += 1
            error = ClientError.from_http(
                status=response.status_code, headers=response.headers, body=response.content
            )
            attempt += 1
            if error.status not in NOTHING_WRITTEN_STATUSES or attempt >= (
                self.options.publish_attempts
            ):
                raise error
            delay = error.retry_after
            await asyncio.sleep(backoff_seconds(attempt, self.options) if delay is None else delay)

    async def read(
        self,
        channel: str,
        *,
        after: int | None,
        wait: int,
        stats: TransportStats,
        etag: str | None = None,
    ) -> tuple[Page | None, str | None]:
        """One read; ``(None, etag)`` when the server says nothing changed (304)."""
        params = {"wait": str(wait)}
        if after is not None:
            params["after"] = str(after)
        headers = {"If-None-Match": etag} if etag else {}
        request = self._client.build_request(
            "GET",
            self.events_url(channel),
            params=params,
            headers=headers,
            timeout=self.options.request_timeout_seconds + wait,
        )
        response = await self._send(request, stats)
        if response.status_code == 304:
            stats.not_modified += 1
            return None, etag
        if response.status_code != 200:
            stats.refusals += 1
            raise ClientError.from_http(
                status=response.status_code, headers=response.headers, body=response.content
            )
        return parse_page(response.content), response.headers.get("etag")

    def backfill(self, stats: TransportStats) -> Backfill:
        """Reads for a sequencer's gaps, counted in ``stats``."""

        async def read(channel: str, after: int) -> Page:
            page, _ = await self.read(channel, after=after, wait=0, stats=stats)
            if page is None:  # no ETag was sent, so a 304 would be a broken server
                raise protocol_error("304 for a read without If-None-Match")
            return page

        return read


class PollingSubscription(ReconnectingSubscription):
    """Long polls in a loop; its own HTTP client, so ``drop_connection`` drops only it."""

    def __init__(self, *, base_url: str, token: TokenSource, **kwargs: Any) -> None:
        self._base_url = base_url
        self._token = token
        options: ClientOptions = kwargs["options"]
        self._api = PollingApi(base_url=base_url, token=token, options=options)
        super().__init__(backfill=self._read_for_backfill, **kwargs)

    async def _read_for_backfill(self, channel: str, after: int) -> Page:
        # Through the current client: drop_connection replaces it.
        return await self._api.backfill(self.stats)(channel, after)

    async def _session(self) -> None:
        after = self.position
        etag: str | None = None
        first = True
        short_polling = self.options.wait_seconds == 0
        while True:
            page, etag = await self._api.read(
                self.channel,
                after=after,
                wait=0 if first else self.options.wait_seconds,
                stats=self.stats,
                etag=etag,
            )
            nothing_new = page is None or not (page.events or page.reset)
            if short_polling and nothing_new and not first:
                await asyncio.sleep(self.options.short_poll_interval_seconds)
            if page is None:
                continue  # 304: nothing new after the cursor
            if first:
                first = False
                head = None
                if after is None:  # live only: the server started at the head
                    head = page.events[0].seq - 1 if page.events and not page.reset else page.next
                await self._emit(Ready(head))
            if page.reset and page.oldest is not None:
                await self._emit(ResetSignal(page.oldest))
            await self._emit_events(page.events)
            after = page.next

    async def _after_drop(self) -> None:
        # A new client: no pooled connection survives the drop.
        await self._api.aclose()
        self._api = PollingApi(base_url=self._base_url, token=self._token, options=self.options)

    async def _end(self) -> None:
        await self._api.aclose()


class PollingTransport(Transport):
    """Publish with POST; subscribe by long polling."""

    name = "polling"

    def __init__(self, *, base_url: str, token: TokenSource, options: ClientOptions) -> None:
        super().__init__(options=options)
        self._base_url = base_url
        self._token = token
        self.api = PollingApi(base_url=base_url, token=token, options=options)

    def _new_subscription(
        self, *, channel: str, after: int | None, on_reset: Callable[[Reset], None] | None
    ) -> Subscription:
        return PollingSubscription(
            base_url=self._base_url,
            token=self._token,
            channel=channel,
            after=after,
            options=self.options,
            on_reset=on_reset,
        )

    async def publish(self, channel: str, data: Any) -> Event:
        return await self.api.publish(channel, data, stats=self.stats)

    async def _end(self) -> None:
        await self.api.aclose()
