"""Long polling: wait inside the request until the log has something to say.

A read with ``wait=W`` reads the log at once; while it finds nothing, it pauses
and reads again, the pause doubling from ``LONG_POLL_FIRST_INTERVAL_SECONDS`` to
at most ``LONG_POLL_MAX_INTERVAL_SECONDS``, until an event arrives (the reply
goes out at once) or W seconds have passed (the reply is empty). The reads are
blocking boto3 calls and run in the threadpool; the pauses are asyncio sleeps,
so under uvicorn one process keeps many waiting requests without a thread each.

There is no push here: the log is a table, so waiting means asking again. That
keeps the function stateless, and an event is seen at most one pause late.

What a waiting Lambda costs (us-east-1 prices; arm64 at the default 256 MB):

- Lambda bills the wait: 25 s x 0.25 GB x $0.0000133334 per GB-s = $0.000083 for
  one empty long poll, $83 per million, against $1 per million for the HTTP API
  request itself. The ~50 strongly consistent reads of one wait add about
  $0.000006 (DynamoDB on demand, $0.125 per million read units).
- A client that keeps one wait open around the clock makes 103,680 requests a
  month and costs about $9.40 a month, almost all of it Lambda time spent
  sleeping. Short polling every 5 s (``wait=0``, ~20 ms billed per request)
  costs about $0.70 a month, with 2.5 s of added latency on average.
- Each waiting request holds an execution environment: 1,000 waiting clients are
  1,000 concurrent executions, the default quota for all functions of an account
  in a region. Past that, Lambda throttles everything in the account.

So long polling on Lambda buys latency with money and concurrency: fine for a
few hundred clients or short waits; for many idle clients the stateful
transports (WebSocket, SSE) cost a small fraction of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from eventlog import metrics
from eventlog.config import (
    LONG_POLL_FIRST_INTERVAL_SECONDS,
    LONG_POLL_MAX_INTERVAL_SECONDS,
    MAX_LONG_POLL_SECONDS,
)
from eventlog.log import ReadResult
from polling.problems import InvalidWait


def parse_wait(raw: object) -> int:
    """``wait`` is a whole number of seconds from 0 to ``MAX_LONG_POLL_SECONDS``."""
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 3:
        value = int(raw)
    if value is None or not 0 <= value <= MAX_LONG_POLL_SECONDS:
        raise InvalidWait(
            f"wait must be a whole number of seconds from 0 to {MAX_LONG_POLL_SECONDS} "
            f"(got {raw!r:.40}); the HTTP API cuts every request at 30 s"
        )
    return value


async def wait_for_events(
    *,
    read: Callable[[], Awaitable[ReadResult]],
    wait: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ReadResult:
    """Read until the result has events or news (``reset``), or ``wait`` seconds have passed.

    A long poll (``wait`` > 0) emits how long it waited and whether it answered nothing.
    """
    started = clock()
    deadline = started + wait
    pause = LONG_POLL_FIRST_INTERVAL_SECONDS
    while True:
        result = await read()
        remaining = deadline - clock()
        if result.events or result.reset or remaining <= 0:
            if wait > 0:
                empty = not (result.events or result.reset)
                metrics.emit(
                    metrics.POLLING,
                    {
                        metrics.LONG_POLL_WAIT: (clock() - started) * 1000,
                        metrics.LONG_POLL_EMPTY: int(empty),
                    },
                )
            return result
        await sleep(min(pause, remaining))
        pause = min(pause * 2, LONG_POLL_MAX_INTERVAL_SECONDS)
