"""The SSE service's knobs, read from the environment.

The shared intervals (heartbeat, retry hint, reader interval, drain) come from
``eventlog.config``, where the infrastructure reads them too. The two limits that
only this service has (streams per process, events queued per subscriber) are
defined here, and the infrastructure imports them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventlog.config import (
    ALB_IDLE_TIMEOUT_SECONDS,
    SSE_DRAIN_SECONDS,
    SSE_HEARTBEAT_SECONDS,
    SSE_MAX_STREAM_SECONDS,
    SSE_READER_INTERVAL_SECONDS,
    SSE_RETRY_MILLISECONDS,
    env_float,
    env_int,
    env_str,
)

SSE_MAX_STREAMS = 10_000
"""Open streams one process accepts before answering 503. Measured by bench/sse_fanout.py
on a 2-core development machine: ~50 KB of memory per stream (~570 MB for 10,000), and
~0.8 s of one core to hand one event to all 10,000 (one socket write each, ~90 us). The task
size in infra/sse_service.py is chosen for it; a busier channel scales out on CPU."""

SSE_QUEUE_EVENTS = 1_000
"""Events one subscriber may have waiting before it counts as too slow and is disconnected.
Keep it at least eventlog.config.MAX_READ_LIMIT: one read of the log can hand a subscriber
that many at once, so a smaller queue disconnects even a fast client on a burst."""

METRICS_NAMESPACE = "RealtimeDelivery/Sse"
"""CloudWatch namespace of ``OpenStreams``, which the service logs and the autoscaling tracks."""

STREAM_PATH = "/channels/{channel}/stream"
"""The one route that streams; the edge (``infra.edge``) routes exactly this pattern here."""

SSE_PORT = 8080
"""The port the container listens on (unprivileged: the container runs as a non-root user)."""


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """How one SSE process behaves. Every field has an ``SSE_*`` environment variable.

    ``drain_seconds`` is the whole shutdown budget: open streams end at random
    moments within its first half (so their clients do not all reconnect to the
    other tasks in the same instant), a stream that still has not ended by the end
    of it is cancelled, and uvicorn's graceful-shutdown timeout is the same number.
    """

    heartbeat_seconds: float = SSE_HEARTBEAT_SECONDS
    retry_milliseconds: int = SSE_RETRY_MILLISECONDS
    reader_interval_seconds: float = SSE_READER_INTERVAL_SECONDS
    drain_seconds: float = SSE_DRAIN_SECONDS
    max_stream_seconds: float = SSE_MAX_STREAM_SECONDS
    """A stream ends cleanly after a random time between half of this and all of it."""
    max_streams: int = SSE_MAX_STREAMS
    queue_events: int = SSE_QUEUE_EVENTS
    cors_origins: tuple[str, ...] = ("*",)
    metrics_interval_seconds: float | None = None
    """Seconds between CloudWatch EMF lines with the open-stream count; None: no metrics."""
    metrics_service: str = "sse"
    """The ``Service`` dimension of those metrics (the infrastructure sets the stack name)."""

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_seconds < ALB_IDLE_TIMEOUT_SECONDS:
            # A heartbeat slower than the load balancer's idle timeout lets it cut quiet streams.
            raise ValueError(
                f"heartbeat_seconds must be above 0 and below {ALB_IDLE_TIMEOUT_SECONDS}"
            )
        if self.retry_milliseconds < 0:
            raise ValueError("retry_milliseconds must not be negative")
        if self.reader_interval_seconds <= 0:
            raise ValueError("reader_interval_seconds must be positive")
        if self.drain_seconds < 0:
            raise ValueError("drain_seconds must not be negative")
        if self.max_stream_seconds <= 0:
            raise ValueError("max_stream_seconds must be positive")
        if self.max_streams < 1 or self.queue_events < 1:
            raise ValueError("max_streams and queue_events must be at least 1")
        if self.metrics_interval_seconds is not None and self.metrics_interval_seconds <= 0:
            raise ValueError("metrics_interval_seconds must be positive")

    @classmethod
    def from_env(cls) -> ServiceSettings:
        origins = env_str("SSE_CORS_ORIGINS")
        metrics = env_str("SSE_METRICS_INTERVAL_SECONDS")
        return cls(
            heartbeat_seconds=env_float("SSE_HEARTBEAT_SECONDS", SSE_HEARTBEAT_SECONDS),
            retry_milliseconds=env_int("SSE_RETRY_MILLISECONDS", SSE_RETRY_MILLISECONDS),
            reader_interval_seconds=env_float(
                "SSE_READER_INTERVAL_SECONDS", SSE_READER_INTERVAL_SECONDS
            ),
            drain_seconds=env_float("SSE_DRAIN_SECONDS", SSE_DRAIN_SECONDS),
            max_stream_seconds=env_float("SSE_MAX_STREAM_SECONDS", SSE_MAX_STREAM_SECONDS),
            max_streams=env_int("SSE_MAX_STREAMS", SSE_MAX_STREAMS),
            queue_events=env_int("SSE_QUEUE_EVENTS", SSE_QUEUE_EVENTS),
            cors_origins=tuple(o.strip() for o in origins.split(",")) if origins else ("*",),
            metrics_interval_seconds=None
            if metrics is None
            else env_float("SSE_METRICS_INTERVAL_SECONDS", 60.0),
            metrics_service=env_str("SSE_METRICS_SERVICE") or "sse",
        )


def listen_port() -> int:
    """The port to listen on: ``PORT`` if set, else SSE_PORT."""
    return env_int("PORT", SSE_PORT)
