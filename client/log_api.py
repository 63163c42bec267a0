"""The log's HTTP API: publish and page reads, ``POST``/``GET /channels/{c}/events``.

The polling API serves it, and so does the SSE service (``eventlog.http_api``, one
implementation for both), so a client publishes and fills its gaps through whichever of
them it has: the polling transport and the SSE transport each through their own server,
the WebSocket transport (which publishes over its socket) through the endpoints file's
``log_api_url`` for backfill. The log, read over HTTP, is the record.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from client.auth import Credentials, TokenSource
from client.base import backoff_seconds, checked_channel, event_from_json
from client.config import ClientOptions
from client.errors import (
    NOTHING_WRITTEN_STATUSES,
    ClientError,
    connection_lost,
    protocol_error,
    unreachable,
)
from client.sequencer import Backfill, Page
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
    except ValueError as exc:
        raise protocol_error(f"not a read reply ({exc})") from None
    return page_from_json(obj)


def page_from_json(obj: Any) -> Page:
    """A read's page from its decoded JSON (an HTTP reply's body, a WebSocket ``page``)."""
    try:
        events = [event_from_json(event) for event in obj["events"]]
        next_cursor, reset, oldest = obj["next"], obj.get("reset", False), obj.get("oldest")
    except (ValueError, KeyError, TypeError) as exc:
        raise protocol_error(f"not a read reply ({exc})") from None
    if not isinstance(next_cursor, int) or not isinstance(reset, bool):
        raise protocol_error("a read reply needs an integer next and a boolean reset")
    if oldest is not None and not isinstance(oldest, int):
        raise protocol_error("a read reply's oldest must be an integer or null")
    return Page(events=events, next=next_cursor, reset=reset, oldest=oldest)


class LogApi:
    """The log's publish and page read over HTTP, through one ``httpx.AsyncClient``."""

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
