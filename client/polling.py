"""Polling: the stateless transport, one HTTP request at a time.

The client carries its cursor. Each read is ``GET /channels/{c}/events?after=N&wait=W``:
a long poll that the server answers as soon as there is an event, or empty when
``wait`` runs out; the client then asks again after the reply's ``next``. A repeated
read sends the last ``ETag`` in ``If-None-Match``, so an unchanged empty reply is a
bodiless 304. The first read of a session does not wait, so ``subscribe()``
returns at once and a live-only subscription learns the head (the reply's ``next``).

Publish and read are ``client.log_api``'s, the log's HTTP API, which the SSE service
serves too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from client.auth import TokenSource
from client.base import (
    Ready,
    ReconnectingSubscription,
    ResetSignal,
    Subscription,
    Transport,
)
from client.config import ClientOptions
from client.log_api import LogApi
from client.sequencer import Page, Reset
from eventlog.events import Event


class PollingSubscription(ReconnectingSubscription):
    """Long polls in a loop; its own HTTP client, so ``drop_connection`` drops only it."""

    def __init__(self, *, base_url: str, token: TokenSource, **kwargs: Any) -> None:
        self._base_url = base_url
        self._token = token
        options: ClientOptions = kwargs["options"]
        self._api = LogApi(base_url=base_url, token=token, options=options)
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
        self._api = LogApi(base_url=self._base_url, token=self._token, options=self.options)

    async def _end(self) -> None:
        await self._api.aclose()


class PollingTransport(Transport):
    """Publish with POST; subscribe by long polling."""

    name = "polling"

    def __init__(self, *, base_url: str, token: TokenSource, options: ClientOptions) -> None:
        super().__init__(options=options)
        self._base_url = base_url
        self._token = token
        self.api = LogApi(base_url=base_url, token=token, options=options)

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
