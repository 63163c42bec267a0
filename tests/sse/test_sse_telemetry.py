"""What the SSE service reports: its streams, feed readers, cuts and drain, and a line per
publish or page read (the event log's own telemetry: ``tests/test_delivery_telemetry.py``)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from eventlog import EventLog, metrics
from sse_service.app import HEALTH_PATH, create_app, sse_metrics
from sse_service.hub import Hub
from sse_service.settings import ServiceSettings
from tests.auth_support import verifier
from tests.test_delivery_telemetry import REQUEST_LOG, check_the_request_log, extras


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


@pytest.mark.anyio
async def test_an_sse_publish_or_read_logs_a_line_as_the_polling_api_does(
    log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(log=log, settings=ServiceSettings(), auth=verifier())
    transport = httpx.ASGITransport(app=app)
    trace = {"X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678"}
    async with httpx.AsyncClient(transport=transport, base_url="http://sse.test") as client:
        lines = await check_the_request_log(client, caplog, transport="sse", headers=trace)
        assert lines[0]["request_id"] == trace["X-Amzn-Trace-Id"]
        assert (await client.get(HEALTH_PATH)).status_code == 200
    assert len(extras(caplog, REQUEST_LOG)) == len(lines)  # the ALB's health checks: not logged
