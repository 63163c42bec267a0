"""What the SSE service reads from the log while its streams sit idle: the backplane's point.

N streams are opened on N channels of their own and left idle; once every one is
open (and has had its catch-up read), the service's ``log_reads`` counter
(``/healthz``) is sampled over a window. Without a broker each channel's feed
reads the log every reader interval, whether or not anything is published
(``N / SSE_READER_INTERVAL_SECONDS`` reads a second); pushed by the broker
(``sse_service.broker``), a feed reads only to catch up, so the figure should be 0.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from client.auth import Credentials, TokenSource
from eventlog.config import SSE_READER_INTERVAL_SECONDS
from eventlog.endpoints import Endpoints


async def _health(api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    reply = await api.get(f"{url}/healthz")
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


SETTLE_SECONDS = 1.0
"""How long the read counter must stay still before the window opens."""


async def _settled(api: httpx.AsyncClient, url: str, *, within: float = 30.0) -> dict[str, Any]:
    """The service's health once every feed's head read and catch-up read are done.

    Each channel reads the log twice as it starts (its head, and a catch-up once the
    broker confirms its subscription); 200 of them at once through one DynamoDB take a
    second or two. Those are a stream's opening cost, not what an idle channel costs,
    so the window opens once the counter has stood still for ``SETTLE_SECONDS``.
    """
    deadline = time.perf_counter() + within
    last = await _health(api, url)
    while time.perf_counter() < deadline:
        await asyncio.sleep(SETTLE_SECONDS)
        now = await _health(api, url)
        if now["log_reads"] == last["log_reads"]:
            return now
        last = now
    return last


async def _hold(api: httpx.AsyncClient, url: str, opened: asyncio.Event) -> None:
    async with api.stream("GET", url) as reply:
        reply.raise_for_status()
        opened.set()
        async for _ in reply.aiter_bytes():
            pass  # heartbeats only


async def measure(
    endpoints: Endpoints, *, channels: int, seconds: float, token: TokenSource
) -> dict[str, Any]:
    """Log reads per second by the SSE service with ``channels`` idle streams open."""
    if not endpoints.sse_url:
        raise RuntimeError("the SSE service's URL is not in the endpoints file")
    base = endpoints.sse_url
    bearer = await Credentials(token).token()
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    limits = httpx.Limits(max_connections=channels + 4, max_keepalive_connections=4)
    run = f"{time.time_ns():x}"
    # No read timeout: an idle stream carries only a heartbeat every 15 s.
    timeout = httpx.Timeout(10.0, read=None)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as api:
        opened = [asyncio.Event() for _ in range(channels)]
        streams = [
            asyncio.create_task(_hold(api, f"{base}/channels/idle.{run}.{n}/stream", event))
            for n, event in enumerate(opened)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 60)
            before = await _settled(api, base)
            started = time.perf_counter()
            await asyncio.sleep(seconds)
            after = await _health(api, base)
            elapsed = time.perf_counter() - started
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
    return {
        "channels": channels,
        "seconds": elapsed,
        "log_reads_per_second": (after["log_reads"] - before["log_reads"]) / elapsed,
        "polling_reads_per_second": channels / SSE_READER_INTERVAL_SECONDS,
        "broker": after.get("broker", "off"),
    }
