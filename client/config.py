"""The reference client's knobs, each derived from the limit it has to respect.

The server-side limits live in ``eventlog.config``; the client only decides how
it behaves inside them, so every default below names the limit it follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eventlog.config import (
    HTTP_API_TIMEOUT_SECONDS,
    MAX_LONG_POLL_SECONDS,
    MAX_READ_LIMIT,
    SEQ_ABANDONED_AFTER_SECONDS,
    SSE_HEARTBEAT_SECONDS,
    SSE_RETRY_MILLISECONDS,
    WEBSOCKET_IDLE_TIMEOUT_SECONDS,
)

DEFAULT_WAIT_SECONDS = 20
"""Long-poll ``wait``: below the server's ``MAX_LONG_POLL_SECONDS`` (25), so a slow reply
still comes back before the HTTP API cuts the request at 30 s."""

SHORT_POLL_INTERVAL_SECONDS = 1.0
"""Pause between two reads that found nothing, when ``wait_seconds`` is 0 (short polling);
with long polling the server does the waiting and the next read goes out at once."""

REQUEST_TIMEOUT_SECONDS = float(HTTP_API_TIMEOUT_SECONDS)
"""Most a plain request (publish, a read without ``wait``, a WebSocket acknowledgement) may
take: no reply can take longer than the API Gateway integration timeout anyway."""

SSE_READ_TIMEOUT_SECONDS = 3 * SSE_HEARTBEAT_SECONDS
"""A stream that sends nothing, not even a heartbeat, for three heartbeat intervals is
dead (a half-open connection): drop it and reconnect."""

SSE_DEFAULT_RETRY_SECONDS = SSE_RETRY_MILLISECONDS / 1000
"""Reconnect delay until the stream's own ``retry:`` hint says otherwise."""

WEBSOCKET_KEEPALIVE_SECONDS = WEBSOCKET_IDLE_TIMEOUT_SECONDS / 10
"""``{"action": "ping"}`` every minute: far inside API Gateway's 10 min idle timeout, and a
dead connection is noticed within about a minute and a half. Each ping is one API Gateway
message and one Lambda invocation, about 43,000 a month per client."""

WEBSOCKET_PONG_TIMEOUT_SECONDS = float(HTTP_API_TIMEOUT_SECONDS)
"""How long a ping may wait for its pong (the ping route is a Lambda function, which may
cold start) before the connection counts as dead."""

RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 10.0
"""Reconnect backoff after a failure: full jitter, doubling from the minimum to the maximum."""

PUBLISH_ATTEMPTS = 3
"""Tries of a publish the server refused for capacity (429, 503): nothing was written, so a
retry cannot duplicate an event. A publish whose reply was lost is never retried."""

QUEUE_EVENTS = MAX_READ_LIMIT * 10
"""Events a subscription holds for an application that has not taken them yet; when full,
the subscription stops reading (backpressure) instead of growing."""

BACKFILL_PAUSE_SECONDS = 0.05
"""First pause between reads of the log that came back without a missing event; it doubles
after each, up to ``BACKFILL_MAX_PAUSE_SECONDS``."""

BACKFILL_MAX_PAUSE_SECONDS = 2.0
"""Longest pause between those reads."""

BACKFILL_ATTEMPTS = 6 + math.ceil(SEQ_ABANDONED_AFTER_SECONDS / BACKFILL_MAX_PAUSE_SECONDS)
"""Reads of the log that may come back without the missing event before a gap is an error.
The log never hands out N+1 before N is settled: a seq being written takes milliseconds, and
one whose publisher died is filled by the first read after ``SEQ_ABANDONED_AFTER_SECONDS``,
so the reads go on for longer than that (the first six pauses add up to about 3 s)."""


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How a transport behaves; every field has a default derived above."""

    wait_seconds: int = DEFAULT_WAIT_SECONDS
    short_poll_interval_seconds: float = SHORT_POLL_INTERVAL_SECONDS
    request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS
    sse_read_timeout_seconds: float = SSE_READ_TIMEOUT_SECONDS
    keepalive_seconds: float = WEBSOCKET_KEEPALIVE_SECONDS
    pong_timeout_seconds: float = WEBSOCKET_PONG_TIMEOUT_SECONDS
    reconnect_min_seconds: float = RECONNECT_MIN_SECONDS
    reconnect_max_seconds: float = RECONNECT_MAX_SECONDS
    publish_attempts: int = PUBLISH_ATTEMPTS
    queue_events: int = QUEUE_EVENTS
    backfill_attempts: int = BACKFILL_ATTEMPTS
    backfill_pause_seconds: float = BACKFILL_PAUSE_SECONDS

    def __post_init__(self) -> None:
        if not 0 <= self.wait_seconds <= MAX_LONG_POLL_SECONDS:
            raise ValueError(f"wait_seconds must be from 0 to {MAX_LONG_POLL_SECONDS}")
        positive = {
            "request_timeout_seconds": self.request_timeout_seconds,
            "sse_read_timeout_seconds": self.sse_read_timeout_seconds,
            "keepalive_seconds": self.keepalive_seconds,
            "pong_timeout_seconds": self.pong_timeout_seconds,
            "reconnect_max_seconds": self.reconnect_max_seconds,
            "publish_attempts": self.publish_attempts,
            "queue_events": self.queue_events,
            "backfill_attempts": self.backfill_attempts,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.reconnect_min_seconds <= self.reconnect_max_seconds:
            raise ValueError("reconnect_min_seconds must be from 0 to reconnect_max_seconds")
        if self.backfill_pause_seconds < 0 or self.short_poll_interval_seconds < 0:
            raise ValueError(
                "backfill_pause_seconds and short_poll_interval_seconds must not be negative"
            )
