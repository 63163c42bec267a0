"""What a run measures: the full run (on demand) and the quick one (CI).

The full run uses the production intervals and the N of the comparison (SSE 100,
1,000 and 10,000 streams; WebSocket 10, 100 and 1,000 connections). The quick run
keeps every measurement but makes it small: a few events, small N, and idle
intervals shortened so that a few seconds show several cycles; the per-minute
figures are then scaled to the production intervals (``Idle``), so both runs report
the same quantities, the quick one with more noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.config import (
    DEFAULT_WAIT_SECONDS,
    SHORT_POLL_INTERVAL_SECONDS,
    WEBSOCKET_KEEPALIVE_SECONDS,
)
from eventlog.config import SSE_HEARTBEAT_SECONDS, SSE_READER_INTERVAL_SECONDS

SEED = 20261128
"""One seed for every random choice of a run (publish pauses), so two runs do the same."""


@dataclass(frozen=True, kw_only=True)
class Idle:
    """Intervals of the idle measurement: as measured, and as scaled to production."""

    window_seconds: float
    long_poll_wait_seconds: int
    short_poll_interval_seconds: float
    sse_heartbeat_seconds: float
    websocket_keepalive_seconds: float


PRODUCTION_IDLE = Idle(
    window_seconds=65.0,
    long_poll_wait_seconds=DEFAULT_WAIT_SECONDS,
    short_poll_interval_seconds=SHORT_POLL_INTERVAL_SECONDS,
    sse_heartbeat_seconds=SSE_HEARTBEAT_SECONDS,
    websocket_keepalive_seconds=WEBSOCKET_KEEPALIVE_SECONDS,
)
"""The intervals the client and the service use by default; per-minute figures are for these."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    name: str
    latency_events: int
    """Events timed per transport (after ``warmup_events`` untimed ones)."""
    warmup_events: int
    pause_max_seconds: float
    """Random pause before each publish, uniform in [0, this]: samples every phase of a
    poll loop or a reader interval instead of always publishing right after a delivery."""
    idle: Idle
    sse_counts: tuple[int, ...]
    sse_rounds: int
    sse_stalled_readers: int
    """Streams that stop reading while their channel is busy (``bench.sse_stalled``)."""
    sse_stalled_events: int
    """Most events published to them; the run stops early once all are cut."""
    websocket_counts: tuple[int, ...]
    websocket_rounds: int
    websocket_workers: tuple[int, ...]
    """Fan-out threads to compare; the first is 1 (sequential), the second the default."""
    stub_connections: int
    stub_workers: tuple[int, ...]
    stub_delay_ms: float
    stub_rounds: int
    import_runs: int
    hot_publishers: tuple[int, ...]
    """Publishers racing on one channel, one row each (``bench.hot_channel``)."""
    hot_publishes_each: int
    idle_sse_channels: int
    """Idle SSE streams, one channel each, while the log reads are counted (``bench.sse_idle``)."""
    idle_sse_seconds: float


FULL = Plan(
    name="full",
    latency_events=100,
    warmup_events=5,
    pause_max_seconds=SSE_READER_INTERVAL_SECONDS,
    idle=PRODUCTION_IDLE,
    sse_counts=(100, 1_000, 10_000),
    sse_rounds=7,
    sse_stalled_readers=100,
    sse_stalled_events=1_000,
    websocket_counts=(10, 100, 1_000),
    websocket_rounds=3,
    websocket_workers=(1, 16, 64),
    stub_connections=1_000,
    stub_workers=(1, 16, 64),
    stub_delay_ms=5.0,
    stub_rounds=3,
    import_runs=9,
    hot_publishers=(1, 2, 4, 8, 16, 32),
    hot_publishes_each=25,
    idle_sse_channels=200,
    idle_sse_seconds=10.0,
)

QUICK = Plan(
    name="quick",
    latency_events=6,
    warmup_events=1,
    pause_max_seconds=SSE_READER_INTERVAL_SECONDS,
    idle=Idle(
        window_seconds=3.2,
        long_poll_wait_seconds=1,
        short_poll_interval_seconds=0.25,
        sse_heartbeat_seconds=0.5,
        websocket_keepalive_seconds=0.5,
    ),
    sse_counts=(50,),
    sse_rounds=2,
    sse_stalled_readers=5,
    sse_stalled_events=600,
    websocket_counts=(10,),
    websocket_rounds=1,
    websocket_workers=(1, 16),
    stub_connections=40,
    stub_workers=(1, 16),
    stub_delay_ms=5.0,
    stub_rounds=1,
    import_runs=1,
    hot_publishers=(1, 4),
    hot_publishes_each=5,
    idle_sse_channels=10,
    idle_sse_seconds=2.0,
)

PLANS = {plan.name: plan for plan in (FULL, QUICK)}
