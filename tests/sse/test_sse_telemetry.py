"""What the SSE service reports: its streams, feed readers, cuts and drain (the event log's
own telemetry: ``tests/test_delivery_telemetry.py``)."""

from __future__ import annotations

import asyncio

import pytest

from eventlog import EventLog, metrics
from sse_service.app import sse_metrics
from sse_service.hub import Hub


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- SSE ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_sse_report_counts_streams_readers_cuts_and_the_drain(log: EventLog) -> None:
    hub = Hub(
        log=log,
        queue_bytes=1,
        write_slice_bytes=1,
        reader_interval_seconds=1,
        drain_seconds=10,
        retry_milliseconds=1000,
        heartbeat_seconds=15,
    )
    first, _second = hub.admit("news"), hub.admit("news")
    assert sse_metrics(hub, slow_clients_cut=0) == {
        metrics.SSE_OPEN_STREAMS: 2,
        metrics.SSE_FEED_READERS: 0,
        metrics.SSE_SLOW_CLIENTS_CUT: 0,
        metrics.SSE_DRAINING: 0,
    }
    first.offer([(1, b"too big for one byte")])  # over its bound: cut
    hub.leave(first)
    assert hub.stats["closed_overflow"] == 1
    hub.begin_drain()
    values = sse_metrics(hub, slow_clients_cut=1)
    assert (values[metrics.SSE_OPEN_STREAMS], values[metrics.SSE_DRAINING]) == (1, 1)
    await asyncio.sleep(0)
