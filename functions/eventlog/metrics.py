"""Every metric the code emits: its name, unit and namespace, and the line that carries it.

The functions and the SSE service describe delivery in CloudWatch embedded metric
format (EMF): a JSON line on standard output, which CloudWatch Logs turns into metrics
as it ingests the log (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html). No ``PutMetricData`` call, no
SDK, no permission, nothing on the hot path but a ``json.dumps``; the price is that a
metric exists only where a log group collects standard output.

The infrastructure imports the same ``Metric`` objects for the dashboard and the alarms
(``infra.operations``), and the local stack collects the lines its in-process handlers
emit (``local.metrics``), so a name is written once.

Where a line goes is the *sink*: on Lambda (``AWS_LAMBDA_FUNCTION_NAME`` is set) standard
output; elsewhere nowhere, unless one is installed (``use_sink``): the SSE container
installs standard output, the local stack its collector, tests a list. So a script or a
test that publishes through the log prints no metrics.

Every metric has one dimension, ``Service``: ``eventlog`` for publishes (whichever
transport published), ``websocket`` for the fan-out, ``polling`` for long polls, and the
SSE service's own setting (its stack's name on AWS, which its autoscaling tracks).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

NAMESPACE = "RealtimeDelivery"
SERVICE_DIMENSION = "Service"

EVENTLOG = "eventlog"
WEBSOCKET = "websocket"
POLLING = "polling"
SSE = "sse"
"""``Service`` values. SSE's is only the default: the deployment sets the stack's name."""

MAX_VALUES_PER_METRIC = 100
"""EMF takes at most 100 values for one metric in one line; more are split over lines."""

Unit = Literal["Count", "Milliseconds"]


@dataclass(frozen=True)
class Metric:
    """One metric: what CloudWatch calls it, its unit, and what it says to an operator."""

    name: str
    unit: Unit
    meaning: str
    namespace: str = NAMESPACE


# --- Publish (eventlog.log) --------------------------------------------------------------------

PUBLISH_LATENCY = Metric(
    "PublishLatency", "Milliseconds", "One publish: its seq taken and its event written"
)
SEQS_RETAKEN = Metric(
    "PublishSeqsRetaken", "Count", "Seqs a publish took again: filled by a reader, or taken"
)
HEAD_REBUILDS = Metric("HeadRebuilds", "Count", "Channel heads rebuilt from the newest item")

# --- WebSocket fan-out (websocket_api.fanout), one line per stream batch -----------------------

FANOUT_POSTS = Metric("FanoutPosts", "Count", "Frames posted to subscribers")
FANOUT_GONE = Metric("FanoutGone", "Count", "Posts answered 410: the subscriber had left")
FANOUT_THROTTLED = Metric("FanoutThrottled", "Count", "Posts API Gateway throttled (retried)")
FANOUT_DURATION = Metric("FanoutDuration", "Milliseconds", "One stream batch, start to end")
DELIVERY_AGE = Metric(
    "DeliveryAge", "Milliseconds", "From an event's time to its fan-out: what a subscriber waits"
)

# --- SSE service (sse_service.app), one line per reporting interval ----------------------------

SSE_OPEN_STREAMS = Metric("OpenStreams", "Count", "Open SSE streams (the autoscaling target)")
SSE_FEED_READERS = Metric("FeedReaders", "Count", "Channels read from the log by one task")
SSE_SLOW_CLIENTS_CUT = Metric("SlowClientsCut", "Count", "Streams cut for falling behind")
SSE_DRAINING = Metric("DrainingStreams", "Count", "Streams still open on a draining task")

# --- Polling (polling.app) ---------------------------------------------------------------------

LONG_POLL_WAIT = Metric("LongPollWait", "Milliseconds", "How long a read waited for an event")
LONG_POLL_EMPTY = Metric("LongPollEmpty", "Count", "Reads that waited and answered no event")

ALL: tuple[Metric, ...] = (
    PUBLISH_LATENCY,
    SEQS_RETAKEN,
    HEAD_REBUILDS,
    FANOUT_POSTS,
    FANOUT_GONE,
    FANOUT_THROTTLED,
    FANOUT_DURATION,
    DELIVERY_AGE,
    SSE_OPEN_STREAMS,
    SSE_FEED_READERS,
    SSE_SLOW_CLIENTS_CUT,
    SSE_DRAINING,
    LONG_POLL_WAIT,
    LONG_POLL_EMPTY,
)

Value = float | Sequence[float]
Properties = Mapping[str, str | int | float]


def lines(
    service: str,
    values: Mapping[Metric, Value],
    *,
    properties: Properties | None = None,
    now: float | None = None,
) -> Iterator[str]:
    """The EMF lines for ``values``: one, or more when a metric has over 100 values.

    ``properties`` are searchable fields of the log line, not dimensions (so they cost no
    metric): counts, never an event's body.
    """
    timestamp = int((time.time() if now is None else now) * 1000)
    as_lists = {m: list(v) if isinstance(v, Sequence) else [v] for m, v in values.items()}
    as_lists = {m: v for m, v in as_lists.items() if v}  # zero is a value; no values is none
    if not as_lists:
        return
    longest = max(len(v) for v in as_lists.values())
    for start in range(0, longest, MAX_VALUES_PER_METRIC):
        part = {
            m: v[start : start + MAX_VALUES_PER_METRIC]
            for m, v in as_lists.items()
            if v[start : start + MAX_VALUES_PER_METRIC]
        }
        yield _line(service, part, properties or {}, timestamp)


def _line(
    service: str, values: Mapping[Metric, list[float]], properties: Properties, timestamp: int
) -> str:
    by_namespace: dict[str, list[Metric]] = {}
    for metric in values:
        by_namespace.setdefault(metric.namespace, []).append(metric)
    record: dict[str, object] = {
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [[SERVICE_DIMENSION]],
                    "Metrics": [{"Name": m.name, "Unit": m.unit} for m in metrics],
                }
                for namespace, metrics in by_namespace.items()
            ],
        },
        **properties,
        SERVICE_DIMENSION: service,
    }
    for metric, numbers in values.items():
        record[metric.name] = numbers[0] if len(numbers) == 1 else numbers
    return json.dumps(record, separators=(",", ":"))


# --- Where lines go ----------------------------------------------------------------------------

Sink = Callable[[str], None]

_sink: Sink | None = None
_stdout_lock = threading.Lock()


def stdout_sink(line: str) -> None:
    """One line on standard output, whole even when threads emit at once (the fan-out)."""
    with _stdout_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def use_sink(sink: Sink | None) -> None:
    """Send every line to ``sink`` (None: back to the default, stdout on Lambda only)."""
    global _sink
    _sink = sink


def current_sink() -> Sink | None:
    if _sink is not None:
        return _sink
    return stdout_sink if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else None


def emit(
    service: str,
    values: Mapping[Metric, Value],
    *,
    properties: Properties | None = None,
    now: float | None = None,
) -> None:
    """Write ``values`` as EMF lines to the current sink; nothing at all without one."""
    sink = current_sink()
    if sink is None:
        return
    for line in lines(service, values, properties=properties, now=now):
        sink(line)
