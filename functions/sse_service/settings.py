"""The SSE service's knobs, read from the environment.

The shared intervals (heartbeat, retry hint, reader interval, drain) come from
``eventlog.config``, where the infrastructure reads them too. The two limits that
only this service has (streams per process, bytes held per subscriber) are
defined here, and the infrastructure imports them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventlog.config import (
    ALB_IDLE_TIMEOUT_SECONDS,
    MAX_EVENT_BYTES,
    MAX_READ_LIMIT,
    SSE_DRAIN_SECONDS,
    SSE_HEARTBEAT_SECONDS,
    SSE_MAX_STREAM_SECONDS,
    SSE_MAX_STREAMS,
    SSE_READER_INTERVAL_SECONDS,
    SSE_RETRY_MILLISECONDS,
    env_float,
    env_int,
    env_str,
)

SSE_QUEUE_BYTES = 4 * 1024 * 1024
"""Bytes of events one subscriber may hold, queued plus being written, before it counts as too
slow and is disconnected. At least one read of the log (MAX_READ_LIMIT events of up to
MAX_EVENT_BYTES: 3.2 MiB), which the feed hands out at once, so that a burst does not cut a
fast client. Queued frames are shared by every subscriber of the channel (one bytes object per
event), so a stalled stream's own memory is its write slice, not this bound."""

SSE_WRITE_SLICE_BYTES = 64 * 1024
"""Most bytes handed to the socket in one write. uvicorn waits for the transport's buffer to
drain below asyncio's 64 KiB high-water mark before the next write, so a stalled client pins
about two slices of its own, however far behind it is.
Source: docs.python.org/3/library/asyncio-protocol.html (set_write_buffer_limits)"""

STREAM_PATH = "/channels/{channel}/stream"
"""The one route that streams; the edge (``infra.edge``) routes exactly this pattern here."""

SSE_PORT = 8080
"""The port the container listens on (unprivileged: the container runs as a non-root user)."""


SSE_BROKER_URL_ENV = "SSE_BROKER_URL"


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
    queue_bytes: int = SSE_QUEUE_BYTES
    write_slice_bytes: int = SSE_WRITE_SLICE_BYTES
    cors_origins: tuple[str, ...] = ("*",)
    metrics_interval_seconds: float | None = None
    """Seconds between EMF lines of this process's streams (``eventlog.metrics``); None: none."""
    metrics_service: str = "sse"
    """The ``Service`` dimension of those metrics (the infrastructure sets the stack name)."""
    broker_url: str | None = None
    """The push backplane (``sse_service.broker``): ``redis://`` or ``rediss://`` (TLS, as
    ElastiCache Serverless requires); None: every channel's feed polls the log."""

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
        if self.max_streams < 1 or self.write_slice_bytes < 1:
            raise ValueError("max_streams and write_slice_bytes must be at least 1")
        # One read of the log lands in every queue at once, beside the slice being written:
        # a smaller bound would cut fast clients too. 64: an event's "id:"/"data:" framing.
        least = MAX_READ_LIMIT * (MAX_EVENT_BYTES + 64) + self.write_slice_bytes
        if self.queue_bytes < least:
            raise ValueError(f"queue_bytes must hold one read of the log and a slice, {least}")
        if self.metrics_interval_seconds is not None and self.metrics_interval_seconds <= 0:
            raise ValueError("metrics_interval_seconds must be positive")
        if self.broker_url is not None and not self.broker_url.startswith(
            ("redis://", "rediss://")
        ):
            raise ValueError("broker_url must be a redis:// or rediss:// URL")

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
            queue_bytes=env_int("SSE_QUEUE_BYTES", SSE_QUEUE_BYTES),
            write_slice_bytes=env_int("SSE_WRITE_SLICE_BYTES", SSE_WRITE_SLICE_BYTES),
            cors_origins=tuple(o.strip() for o in origins.split(",")) if origins else ("*",),
            metrics_interval_seconds=None
            if metrics is None
            else env_float("SSE_METRICS_INTERVAL_SECONDS", 60.0),
            metrics_service=env_str("SSE_METRICS_SERVICE") or "sse",
            broker_url=env_str(SSE_BROKER_URL_ENV),
        )


def listen_port() -> int:
    """The port to listen on: ``PORT`` if set, else SSE_PORT."""
    return env_int("PORT", SSE_PORT)
