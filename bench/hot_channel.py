"""A hot channel: many publishers on one channel, over HTTP, as a load test of a chat room does.

For each count N of publishers, N clients (each with its own connection) are released
together and each publishes ``publishes_each`` events to one fresh channel through
the polling API, one after the other, as fast as the replies come. Measured:

- *publishes/s*: the publishes that succeeded over the time from the release until
  the last publisher finished;
- *p50, p99*: each publish call, from just before the POST to its reply;
- *failures*: publishes refused or lost. The client makes one attempt per publish
  here (``publish_attempts=1``), so a refusal the reference client would retry
  (503, 429) is counted instead of hidden.

Afterwards the channel is read back: its seqs must be exactly 1..ok, and the events
exactly the ones acknowledged (by seq and data). A run that finds otherwise fails,
since that is a broken log, not a slow one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.latency import percentile
from client import ClientError, ClientOptions, TransportStats
from client.auth import TokenSource
from client.log_api import LogApi
from eventlog.endpoints import POLLING_API_URL, SSE_URL, Endpoints


async def _publisher(
    api: LogApi, *, channel: str, worker: int, count: int, start: asyncio.Event
) -> tuple[list[float], dict[int, Any], int]:
    stats = TransportStats()
    timings: list[float] = []
    acknowledged: dict[int, Any] = {}
    failures = 0
    await start.wait()
    for n in range(count):
        data = {"worker": worker, "n": n}
        started = time.perf_counter()
        try:
            event = await api.publish(channel, data, stats=stats)
        except ClientError:
            failures += 1
            continue
        timings.append((time.perf_counter() - started) * 1000)
        acknowledged[event.seq] = data
    return timings, acknowledged, failures


async def _read_back(api: LogApi, channel: str) -> dict[int, Any]:
    stored: dict[int, Any] = {}
    after = 0
    while True:
        page, _ = await api.read(channel, after=after, wait=0, stats=TransportStats())
        if page is None or page.next == after:
            return stored
        stored.update({event.seq: event.data for event in page.events})
        after = page.next


async def measure_count(
    endpoints: Endpoints, *, publishers: int, publishes_each: int, token: TokenSource, channel: str
) -> dict[str, Any]:
    """One row: ``publishers`` racing on a channel of their own."""
    options = ClientOptions(publish_attempts=1)
    base_url = endpoints.log_api_url
    if not base_url:
        raise RuntimeError(
            f"the hot channel is measured over HTTP: no {POLLING_API_URL} and no {SSE_URL}"
        )
    apis = [LogApi(base_url=base_url, token=token, options=options) for _ in range(publishers)]
    start = asyncio.Event()
    try:
        tasks = [
            asyncio.create_task(
                _publisher(api, channel=channel, worker=w, count=publishes_each, start=start)
            )
            for w, api in enumerate(apis)
        ]
        await asyncio.sleep(0)  # every publisher waits at the start line
        released = time.perf_counter()
        start.set()
        outcomes = await asyncio.gather(*tasks)
        seconds = time.perf_counter() - released
        stored = await _read_back(apis[0], channel)
    finally:
        await asyncio.gather(*(api.aclose() for api in apis))
    timings = [ms for outcome in outcomes for ms in outcome[0]]
    acknowledged = {seq: data for outcome in outcomes for seq, data in outcome[1].items()}
    failures = sum(outcome[2] for outcome in outcomes)
    if sorted(stored) != list(range(1, len(acknowledged) + 1)) or stored != acknowledged:
        raise RuntimeError(
            f"{channel}: the log holds seqs {sorted(stored)[:10]}... for {len(acknowledged)} "
            "acknowledged publishes; they must be exactly 1..N with the acknowledged data"
        )
    return {
        "publishers": publishers,
        "publishes": publishers * publishes_each,
        "ok": len(acknowledged),
        "failures": failures,
        "seconds": seconds,
        "publishes_per_second": len(acknowledged) / seconds,
        "p50_ms": percentile(timings, 0.50) if timings else 0.0,
        "p99_ms": percentile(timings, 0.99) if timings else 0.0,
    }


async def measure(
    endpoints: Endpoints,
    *,
    counts: tuple[int, ...],
    publishes_each: int,
    token: TokenSource,
) -> dict[str, Any]:
    """The hot-channel table: one row per count of publishers, each on a fresh channel."""
    run = f"{time.time_ns():x}"
    rows = [
        await measure_count(
            endpoints,
            publishers=n,
            publishes_each=publishes_each,
            token=token,
            channel=f"hot.{run}.{index}",
        )
        for index, n in enumerate(counts)
    ]
    return {"publishes_each": publishes_each, "rows": rows}
