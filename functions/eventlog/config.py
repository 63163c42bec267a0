"""Every real-time knob and AWS limit, defined once, with its source.

The infrastructure, the functions, the local stack and the tests import these
names; nothing else in the project writes one of these numbers down. Values
that an operator may tune are read from the environment by ``Settings``; the
AWS limits are facts, not settings, and are plain constants.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# --- The wire contract (shared/PROTOCOL.md) -------------------------------------------------

CHANNEL_PATTERN = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.\-]{1,64}")
"""A channel name: 1-64 characters of ``A-Z a-z 0-9 _ . -``, but not ``.`` or ``..``.

Those two are dot segments: a browser (and any URL library that follows RFC 3986)
removes them from ``/channels/./events`` before sending, so such a channel could never
be reached over HTTP. The lookahead is valid in both Python and ECMAScript regexes,
because the OpenAPI schema publishes this same pattern."""

MAX_CURSOR = 10**38 - 1
"""Largest cursor: a seq is a DynamoDB number, which holds at most 38 significant digits;
a larger one in a query would be refused by DynamoDB, not by us.
Source: docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html"""

MAX_EVENT_BYTES = 32 * 1024
"""Largest encoded event by default; it fits one API Gateway WebSocket frame (32 KB)."""

MAX_READ_LIMIT = 100
"""Most events one read returns (polling ``limit`` is 1..100)."""

MAX_LONG_POLL_SECONDS = 25
"""Longest polling ``wait``: under the HTTP API's 30 s integration timeout, with margin."""

RETRY_AFTER_SECONDS = 1
"""``Retry-After`` of a refusal that names no other delay: throttling, contention."""

EVENTS_PATH = "/channels/{channel}/events"
"""The log's HTTP API: ``POST`` publishes, ``GET ?after=N&limit=L`` reads a page. The polling
API and the SSE service both serve it (``eventlog.http_api``), so publishing and backfill
never need one particular transport."""

MAX_BODY_BYTES = 1024 * 1024
"""Largest publish body read at all; bigger ones are refused unparsed with 413. The event
limit (``MAX_EVENT_BYTES``) applies to the compact encoding after parsing, so this only has
to be comfortably above any body that can pass it, whitespace and escapes included, and far
below the HTTP API's 10 MB payload limit."""

EVENTS_CORS_ALLOW_METHODS: tuple[str, ...] = ("GET", "POST")
EVENTS_CORS_ALLOW_HEADERS: tuple[str, ...] = ("Authorization", "Content-Type", "If-None-Match")
EVENTS_CORS_EXPOSE_HEADERS: tuple[str, ...] = ("ETag", "Retry-After", "WWW-Authenticate")
"""What a page on another origin may send to, and read from, the log's HTTP API: the client
needs the ETag, and ``WWW-Authenticate`` tells a missing token from an invalid one."""

# --- AWS limits that shape the transports -------------------------------------------------

HTTP_API_TIMEOUT_SECONDS = 30
"""HTTP API integration timeout, not raisable.
Source: docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html"""

WEBSOCKET_MAX_CONNECTION_SECONDS = 2 * 60 * 60
"""A WebSocket API connection lasts at most 2 h.
Source: docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html"""

WEBSOCKET_IDLE_TIMEOUT_SECONDS = 10 * 60
"""A WebSocket API connection idle for 10 min is closed (same source)."""

WEBSOCKET_MAX_FRAME_BYTES = 32 * 1024
"""WebSocket API frame size limit, 32 KB (same source)."""

WEBSOCKET_MAX_MESSAGE_BYTES = 128 * 1024
"""WebSocket API message payload limit, 128 KB (same source)."""

WEBSOCKET_AUTHORIZER_RESULT_MAX_BYTES = 8 * 1024
"""A Lambda authorizer's result (policy and context) is at most 8 KB (same source)."""

ALB_IDLE_TIMEOUT_SECONDS = 60
"""ALB idle timeout default; an SSE heartbeat must come sooner. HTTP/2 PINGs do not reset it.
Source: docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html"""

# --- DynamoDB: what bounds a hot channel, and what bounds one call ---------------------------

DYNAMODB_PARTITION_WRITE_UNITS_PER_SECOND = 1_000
"""A partition takes at most 1,000 write units per second (3,000 read units). A channel is one
partition key, so this caps one channel's publishes: each publish writes the head (1 unit) and
the event (1 unit per KB). Source:
docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html and
.../developerguide/throttling-key-range-limit-exceeded-mitigation.html"""

PUBLISH_WRITE_UNITS = 2
"""Write units one publish of an event under 1 KB costs: the head counter's update (1) and the
event's put (1). (The transaction it replaced cost 4: transactional writes cost two units per
KB. Source: docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html)"""

DYNAMODB_CONNECT_TIMEOUT_SECONDS = 3
"""The event log's botocore client: seconds to open a connection."""

DYNAMODB_READ_TIMEOUT_SECONDS = 10
"""The event log's botocore client: seconds to wait for a response."""

DYNAMODB_MAX_ATTEMPTS = 4
"""The event log's botocore client: tries per call (botocore's ``standard`` retry mode)."""

DYNAMODB_MAX_POOL_CONNECTIONS = 40
"""The event log's botocore client: kept-alive connections. One per blocking call that can run
at once: the polling app (under uvicorn) and the SSE service run the log's calls in anyio's
worker threads, at most 40 at a time by default. With botocore's default of 10, every call past
the tenth opened a connection and dropped it afterwards, which a hot channel pays for in its
tail latency. Sources: anyio docs (``to_thread.current_default_thread_limiter``, 40 tokens);
botocore ``Config.max_pool_connections`` (default 10)."""

DYNAMODB_MAX_RETRY_BACKOFF_SECONDS = (1 + 2 + 4) + 3 * 5
"""The longest the ``standard`` retry mode sleeps over those tries: before retry n at most
2**(n-1) s (throttling; other errors far less), plus up to 5 s more each time a response asks
for it with ``x-amz-retry-after``. Source: botocore/retries/standard.py (ExponentialBackoff)."""

PUBLISH_CALL_MAX_SECONDS = (
    DYNAMODB_MAX_ATTEMPTS * (DYNAMODB_CONNECT_TIMEOUT_SECONDS + DYNAMODB_READ_TIMEOUT_SECONDS)
    + DYNAMODB_MAX_RETRY_BACKOFF_SECONDS
)
"""The longest one write of the event log can take before botocore gives up. A publisher
writes its event right after it takes a seq, so this (74 s) bounds how long a live publisher
leaves a seq unwritten. Functions that publish die sooner (the polling function at 29 s, the
WebSocket route at 29 s); the local stack and containers have no such limit, so this is the bound."""

CLOCK_SKEW_SECONDS = 1
"""Margin for the publisher's clock (which stamps a seq's assignment) against a reader's.
EC2 and Lambda keep time with the Amazon Time Sync Service, within a millisecond; one second
also covers a laptop."""

SEQ_ABANDONED_AFTER_SECONDS = PUBLISH_CALL_MAX_SECONDS + CLOCK_SKEW_SECONDS
"""A seq still unwritten this long after it was assigned was abandoned by its publisher (it
crashed or timed out between taking the seq and writing the event): a reader fills it with a
tombstone. Until then readers wait for it. Too short would only cost a live publisher a retry
(its conditional write fails on the tombstone and it takes a fresh seq), never an event."""

READ_MAX_QUERIES = 8
"""Most ``Query`` calls one read may make. Expired items that TTL has not deleted yet (it is
lazy, typically days) are skipped with full 1 MB pages, so this skips tens of thousands of
them; a read that runs out returns a ``reset`` with where to continue."""

PUBLISH_MAX_ATTEMPTS = 5
"""Seqs one publish may take. A publish takes another only when its first was filled with a
tombstone (it took longer than ``SEQ_ABANDONED_AFTER_SECONDS``) or the head had to be rebuilt."""

# --- Defaults of the tunable knobs ------------------------------------------------------------

# Each transport's own knobs that the cost model (bench/cost.py) prices too: here, so that
# the model still runs in a checkout that has removed one transport.

LONG_POLL_FIRST_INTERVAL_SECONDS = 0.1
"""First pause between two reads of a waiting request; it doubles after every empty read."""

LONG_POLL_MAX_INTERVAL_SECONDS = 0.5
"""Longest pause between two reads: the most an event waits for a waiting request to see it.
An empty 25 s wait then costs about 50 reads, each a fraction of a cent per thousand."""

SSE_MAX_STREAMS = 10_000
"""Open streams one process accepts before answering 503. Measured by bench/sse_fanout.py
on a 2-core development machine: ~17 KB of memory per stream (~250 MB RSS for 10,000), and
~0.2 s of one core to hand one event to all 10,000 (uvicorn's send and one socket write
each, ~20 us). The task size in infra/sse_service.py is chosen for it; a busier channel
scales out on CPU."""

DEFAULT_FANOUT_WORKERS = 16
"""Concurrent ``post_to_connection`` calls per fan-out invocation.

Each call is a network round trip that releases the GIL while it waits, so
threads multiply throughput until the CPU cost per call (about 0.3 ms to sign and
send one, ``websocket_api.management``) saturates the function's vCPU.
``bench/websocket_fanout.py`` measures the curve against a stub with a 5 ms round
trip: sequential against 16 and 64 threads. The account-wide callback throttle
(10,000 rps shared by all APIs) is the ceiling that concurrent fan-out invocations
share. Defined here, not in ``websocket_api``, because the cost model reads it."""

DEFAULT_RETENTION_SECONDS = 24 * 60 * 60
"""How long the log keeps an event (DynamoDB TTL); a cursor older than this gets ``reset``."""

SSE_HEARTBEAT_SECONDS = 15.0
"""SSE comment heartbeat interval: well under the ALB idle timeout."""

SSE_RETRY_MILLISECONDS = 2_000
"""The ``retry:`` hint sent at the start of every SSE stream."""

SSE_READER_INTERVAL_SECONDS = 0.25
"""How often one SSE process polls the log for a channel that has subscribers."""

SSE_DRAIN_SECONDS = 20
"""How long an SSE process gets to end its streams once it is told to stop (SIGTERM).

On ECS that is rarely where streams end: ECS deregisters a task from the load balancer
and waits out the deregistration delay *before* it sends SIGTERM ("Amazon ECS waits for
the load balancer to report ... the target is in an UNUSED state", docs.aws.amazon.com/
AmazonECS/latest/developerguide/load-balancer-connection-draining.html). Streams on a
deregistering task are ended by ``SSE_MAX_STREAM_SECONDS`` instead; this window covers a
SIGTERM that comes first (a stopped task, a local Ctrl-C)."""

SSE_MAX_STREAM_SECONDS = 300
"""The longest one SSE stream lasts before the server ends it cleanly, at a random moment
between half of this and all of it; the client reconnects with ``Last-Event-ID`` and loses
nothing. This is what drains a task that the load balancer deregisters: every stream on
it has ended by the time the deregistration delay (this plus a margin) runs out, spread
over the window, so its clients move to the other tasks a few at a time rather than all
in the instant the load balancer cuts them. It also spreads streams onto new tasks after
a scale-out. Price: one reconnect and one backlog read per stream per few minutes."""


def env_str(name: str) -> str | None:
    """An environment variable, or None when unset or blank."""
    raw = os.environ.get(name)
    return None if raw is None or raw.strip() == "" else raw.strip()


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    try:
        return default if raw is None else int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = env_str(name)
    try:
        return default if raw is None else float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What the event log needs to know, read from the environment.

    ``EVENTS_TABLE_NAME`` names the table; ``EVENT_RETENTION_SECONDS`` and
    ``MAX_EVENT_BYTES`` tune retention and the size limit. Where DynamoDB lives is
    boto3's own configuration (``AWS_ENDPOINT_URL_DYNAMODB`` points it at moto or a
    local server), so the same code runs locally and on AWS unchanged.
    """

    events_table_name: str = "events"
    retention_seconds: int = DEFAULT_RETENTION_SECONDS
    max_event_bytes: int = MAX_EVENT_BYTES

    def __post_init__(self) -> None:
        if self.retention_seconds <= 0:
            raise ValueError("retention_seconds must be positive")
        if not 0 < self.max_event_bytes <= MAX_EVENT_BYTES:
            # Larger events would not fit one WebSocket frame, so the limit only goes down.
            raise ValueError(f"max_event_bytes must be between 1 and {MAX_EVENT_BYTES}")

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            events_table_name=os.environ.get("EVENTS_TABLE_NAME", "events"),
            retention_seconds=env_int("EVENT_RETENTION_SECONDS", DEFAULT_RETENTION_SECONDS),
            max_event_bytes=env_int("MAX_EVENT_BYTES", MAX_EVENT_BYTES),
        )
