"""What the polling API logs and emits: one line per request, long-poll metrics, never a
token or an event's body (the event log's own: ``tests/test_delivery_telemetry.py``)."""

from __future__ import annotations

import httpx
import pytest

from eventlog import EventLog, metrics
from eventlog.log import ReadResult
from polling.app import create_app
from polling.long_poll import wait_for_events
from tests.metrics_support import Emitted
from tests.test_delivery_telemetry import check_the_request_log

# --- Polling -----------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_polling_request_logs_its_route_channel_seq_and_outcome(
    log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(app=create_app(log=log))
    async with httpx.AsyncClient(transport=transport, base_url="http://polling.test") as client:
        await check_the_request_log(client, caplog, transport="polling")


@pytest.mark.anyio
async def test_a_long_poll_emits_its_wait_and_whether_it_came_back_empty(emitted: Emitted) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def nothing() -> ReadResult:
        return ReadResult(channel="news", events=[], next=0)

    await wait_for_events(read=nothing, wait=2, clock=lambda: now[0], sleep=sleep)
    await wait_for_events(read=nothing, wait=0, clock=lambda: now[0], sleep=sleep)  # no wait
    assert emitted.values(metrics.LONG_POLL_WAIT, service=metrics.POLLING) == [2000.0]
    assert emitted.values(metrics.LONG_POLL_EMPTY, service=metrics.POLLING) == [1]
