"""The WebSocket transport's own knobs: environment variable names and fan-out tuning.

Limits shared with other transports (frame sizes, the 2 h connection lifetime)
live in ``eventlog.config``, and so does the fan-out's worker count, which the cost model
prices; this module only holds what nothing else reads.
The infrastructure imports the variable names from here, so the names the
functions read and the names the stack sets cannot drift apart.
"""

from __future__ import annotations

import os

from auth.config import TOKEN_QUERY_PARAMETER

# Re-exported: the fan-out and its infrastructure read it here, beside the other fan-out knobs.
from eventlog.config import DEFAULT_FANOUT_WORKERS as DEFAULT_FANOUT_WORKERS

# --- Environment variables (set by infra/websocket_api.py and by the local stack) ----------

CONNECTIONS_TABLE_ENV = "CONNECTIONS_TABLE_NAME"
"""Name of the connections table (see ``websocket_api.connections``)."""

MANAGEMENT_ENDPOINT_ENV = "WEBSOCKET_MANAGEMENT_ENDPOINT"
"""The @connections API root, e.g. ``https://abc.execute-api.eu-west-1.amazonaws.com/ws``.

Route handlers derive it from their event and need it only to override that (the
local stack points it at 127.0.0.1). The fan-out has no WebSocket event, so the
stack always sets it there."""

FANOUT_WORKERS_ENV = "FANOUT_WORKERS"

# --- Auth -------------------------------------------------------------------------------------

IDENTITY_SOURCE = f"route.request.querystring.{TOKEN_QUERY_PARAMETER}"
"""Where the ``$connect`` authorizer's token comes from. API Gateway refuses a connect
without it (401) before invoking the authorizer; the local gateway does the same."""

# --- Fan-out tuning ---------------------------------------------------------------------------

FANOUT_PAGE_SIZE = 250
"""Subscribers per Query page of a fan-out; the next page is read while this one is posted.

Smaller pages start the first posts sooner; each page is one more Query request, and a
consistent read costs one read unit per 4 KB of each request (rounded up), so 1,000
subscriber items of about 70 bytes cost 20 units in four pages against 18 in one. On
moto, whose Query of 1,000 items took about 350 ms, this moved most of the read under the
posts (``bench/gateway_fanout.py``)."""

POST_CONNECT_TIMEOUT_SECONDS = 2
POST_READ_TIMEOUT_SECONDS = 5
"""The @connections client's timeouts: one attempt of one post takes at most their sum."""

FANOUT_TIMEOUT_SECONDS = 300
"""The fan-out function's timeout: a batch of ``fanout_batch_size`` events, each posted to
every subscriber of its channel. The stack deploys it; the local stack's event source mapping
gives each invocation the same deadline."""

FANOUT_DEADLINE_MARGIN_SECONDS = POST_CONNECT_TIMEOUT_SECONDS + POST_READ_TIMEOUT_SECONDS + 3
"""The fan-out starts no post with less than this left before its Lambda timeout: room for
the posts already in flight (one attempt each), the cleanup of gone connections and the
response that names the unfinished records. Past it, the invocation returns instead of
being killed, so Lambda retries only the unfinished records, not the whole batch."""

POST_MAX_ATTEMPTS = 5
"""Tries per frame when the @connections API fails transiently, or throttles (429) a sender
that has no deadline. The fan-out, which has one, retries a throttled post until its
deadline is near instead (``websocket_api.fanout``)."""

BACKLOG_STALL_PAUSES = 5
BACKLOG_STALL_FIRST_PAUSE_SECONDS = 0.05
"""A subscribe's backlog read that stops before a seq still being written reads again after a
pause that doubles from this, at most ``BACKLOG_STALL_PAUSES`` times (about 1.5 s in all): a
live publisher writes its event within milliseconds of taking the seq."""

POST_BACKOFF_BASE_SECONDS = 0.05
POST_BACKOFF_CAP_SECONDS = 1.0
"""Full-jitter exponential backoff between tries: uniform(0, min(cap, base * 2**attempt))."""


def connections_table_name() -> str:
    return os.environ.get(CONNECTIONS_TABLE_ENV, "connections")


def fanout_workers() -> int:
    raw = os.environ.get(FANOUT_WORKERS_ENV, "")
    if not raw:
        return DEFAULT_FANOUT_WORKERS
    try:
        workers = int(raw)
    except ValueError:
        raise ValueError(f"{FANOUT_WORKERS_ENV} must be an integer, got {raw!r}") from None
    if workers < 1:
        raise ValueError(f"{FANOUT_WORKERS_ENV} must be at least 1, got {workers}")
    return workers
