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
            await asyncio.sleep(1.0)  # each feed's head read and catch-up read are done
            before = await _health(api, base)
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
