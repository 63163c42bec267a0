"""The keys of ``results.json``: stable, documented here once, rendered into docs/TRADEOFFS.md.

A key is a dotted path; ``[]`` marks a list whose every element has the fields after
it (one element per N of a fan-out). Every key holds a number in both the quick and
the full run; ``missing_or_not_numeric`` is what the test suite checks.
"""

from __future__ import annotations

import math
from typing import Any

TRANSPORTS = ("polling", "sse", "websocket")
IDLE_CLIENTS = ("polling_long", "polling_short", "sse", "websocket")

SCHEMA: dict[str, str] = {}
"""Key -> what it is (with its unit)."""


def _add(key: str, description: str) -> None:
    SCHEMA[key] = description


for _t in TRANSPORTS:
    _add(f"latency.{_t}.p50_ms", f"{_t}: publish -> deliver, median, ms")
    _add(f"latency.{_t}.p95_ms", f"{_t}: publish -> deliver, 95th percentile, ms")
    _add(f"latency.{_t}.p99_ms", f"{_t}: publish -> deliver, 99th percentile, ms")
    _add(f"latency.{_t}.mean_ms", f"{_t}: publish -> deliver, mean, ms")
    _add(f"latency.{_t}.samples", f"{_t}: events timed")
    _add(f"latency.{_t}.publish_ack_p50_ms", f"{_t}: the publish call alone, median, ms")
    _add(
        f"latency.{_t}.after_ack_p50_ms",
        f"{_t}: deliver minus the publish call's own time, median, ms",
    )
    for _field, _what in (
        ("subscriber_requests", "requests the subscriber sent"),
        ("subscriber_bytes_received", "bytes the subscriber received"),
        ("subscriber_bytes_sent", "bytes the subscriber sent"),
        ("publisher_requests", "requests (or frames) the publisher sent"),
        ("publisher_bytes_sent", "bytes the publisher sent"),
        ("publisher_bytes_received", "bytes the publisher received"),
    ):
        _add(f"wire.per_event.{_t}.{_field}", f"{_t}: {_what}, per delivered event")
for _c in IDLE_CLIENTS:
    _add(f"wire.idle.{_c}.requests_per_minute", f"{_c}: requests an idle client sends per minute")
    _add(f"wire.idle.{_c}.bytes_per_minute", f"{_c}: bytes an idle client moves per minute")
    _add(f"wire.idle.{_c}.bytes_per_cycle", f"{_c}: bytes of one poll / heartbeat / ping-pong")
    _add(f"wire.idle.{_c}.measured_interval_seconds", f"{_c}: interval during the measurement")
    _add(f"wire.idle.{_c}.production_interval_seconds", f"{_c}: interval scaled to")
    _add(f"wire.idle.{_c}.window_seconds", f"{_c}: length of the idle window")

for _field, _what in (
    ("n", "streams opened (plus one warm-up stream)"),
    ("held", "streams still open after the rounds"),
    ("open_seconds", "seconds to open them"),
    ("kb_per_stream", "server RSS growth per stream, KB"),
    ("rss_mb", "server RSS with all streams open, MB"),
    ("publish_to_first_ms", "publish -> first stream, median, ms (includes the reader interval)"),
    ("publish_to_all_ms", "publish -> last stream, median, ms"),
    ("fanout_ms", "first stream -> last stream, median, ms: handing one event to N"),
    ("fanout_max_ms", "first -> last stream, worst round, ms"),
):
    _add(f"fanout.sse.rows[].{_field}", f"SSE, per N: {_what}")

for _field, _what in (
    ("n", "connections subscribed to the channel"),
    ("open_seconds", "seconds to connect and subscribe them ($connect + subscribe)"),
    ("sequential_ms", "invoke -> last socket with FANOUT_WORKERS=1, median, ms"),
    ("concurrent_ms", "invoke -> last socket with the default workers, median, ms"),
    ("many_workers_ms", "invoke -> last socket with 64 workers, median, ms"),
    ("first_ms", "invoke -> first socket with the default workers, median, ms"),
    ("handler_ms", "the handler's own time with the default workers, median, ms"),
    ("sequential_over_concurrent", "sequential_ms / concurrent_ms"),
    ("function_cpu_ms_per_post", "fan-out function CPU per delivered frame, ms"),
    ("gateway_cpu_ms_per_post", "gateway CPU per delivered frame, ms"),
):
    _add(f"fanout.websocket.rows[].{_field}", f"WebSocket via the local gateway, per N: {_what}")
_add("fanout.websocket.default_workers", "FANOUT_WORKERS default (websocket_api.config)")
for _field, _what in (
    ("connections", "connections posted to"),
    ("delay_ms", "stub's delay per post, ms (stands in for the network)"),
    ("sequential_ms", "one worker, ms"),
    ("concurrent_ms", "the default workers, ms"),
    ("many_workers_ms", "64 workers, ms"),
    ("sequential_over_concurrent", "sequential_ms / concurrent_ms"),
):
    _add(f"fanout.websocket_stub.{_field}", f"WebSocket fan-out against a delaying stub: {_what}")

for _h in (
    "boto3",
    "polling_handler",
    "websocket_routes",
    "websocket_fanout",
    "websocket_authorizer",
):
    _add(f"cold_start.{_h}.compiled_ms", f"{_h}: import, bytecode cached, median ms")
    _add(f"cold_start.{_h}.from_source_ms", f"{_h}: import, project compiled at import, median ms")
    _add(f"cold_start.{_h}.as_shipped_ms", f"{_h}: the one of the two that the assets match")
    if _h != "boto3":
        _add(f"cold_start.{_h}.ratio_to_boto3", f"{_h}: as_shipped_ms / boto3 as_shipped_ms")
for _a in ("polling", "websocket", "websocket_authorizer"):
    _add(f"assets.{_a}.zip_kb", f"{_a} Lambda asset, deflated zip, KB")
    _add(f"assets.{_a}.unpacked_kb", f"{_a} Lambda asset, unpacked, KB")
    _add(f"assets.{_a}.pyc_files", f"{_a} Lambda asset, bytecode files it ships")

_add("memory.sse_kb_per_stream", "SSE server memory per open stream at the largest N, KB")
_add("memory.sse_streams_per_task", "SSE streams one task holds (the service's cap)")
_add("memory.sse_stalled_readers", "SSE streams that stop reading on a busy channel")
_add("memory.sse_stalled_published_mb", "what was published to them until all were cut, MiB")
_add("memory.sse_stalled_rss_growth_mb", "SSE server peak memory growth while they stalled, MiB")
_add(
    "memory.sse_stalled_kb_per_reader",
    "that growth per stalled stream, KiB (queued frames are shared)",
)
_add("memory.sse_stalled_cut", "stalled streams disconnected for lagging (all of them)")
_add(
    "memory.sse_stalled_peak_held_kb", "most bytes one stream held, queued plus being written, KiB"
)
_add("memory.websocket_gateway_kb_per_connection", "local gateway memory per connection, KB")
_add("memory.websocket_items_per_connection", "DynamoDB items a subscribed connection keeps")
_add("memory.websocket_item_bytes_per_connection", "their size as DynamoDB bills capacity, bytes")
_add(
    "memory.websocket_storage_bytes_per_connection",
    "their stored size with per-item overhead and the keys-only index, bytes",
)
for _t, _where in (
    ("polling", "functions/polling + infra/polling_api.py"),
    ("sse", "functions/sse_service + infra/sse_service.py"),
    ("websocket", "functions/websocket_api + infra/websocket_api.py"),
):
    _add(f"complexity.{_t}.python_lines", f"{_t}: lines of Python in {_where}")
    _add(f"complexity.{_t}.runtime_files", f"{_t}: Python files the transport deploys")
for _field, _what in (
    ("publishers", "publishers racing on the channel"),
    ("publishes", "publishes attempted"),
    ("ok", "publishes acknowledged with a seq"),
    ("failures", "publishes refused or lost"),
    ("publishes_per_second", "acknowledged publishes per second of the race"),
    ("p50_ms", "one publish call, median, ms"),
    ("p99_ms", "one publish call, 99th percentile, ms"),
):
    _add(f"hot_channel.rows[].{_field}", f"hot channel over HTTP, per count: {_what}")
_add("hot_channel.publishes_each", "publishes per publisher")
_add("sse_idle.channels", "SSE streams held open, one idle channel each")
_add("sse_idle.seconds", "how long the SSE service's log reads were counted, s")
_add("sse_idle.log_reads_per_second", "log reads per second by the SSE service meanwhile")
_add(
    "sse_idle.polling_reads_per_second",
    "what feeds polling the log every reader interval would read, per second",
)
_add("meta.seed", "seed of every random choice")
_add("meta.cpus", "CPUs of the machine")
_add("meta.duration_seconds", "how long the run took")


def _lookup(results: Any, parts: list[str]) -> list[Any]:
    """Every value at ``parts`` (a list step fans out); a missing step yields ``None``."""
    if not parts:
        return [results]
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        items = results.get(head[:-2]) if isinstance(results, dict) else None
        if not isinstance(items, list) or not items:
            return [None]
        return [value for item in items for value in _lookup(item, rest)]
    if not isinstance(results, dict) or head not in results:
        return [None]
    return _lookup(results[head], rest)


def missing_or_not_numeric(results: dict[str, Any]) -> list[str]:
    """Schema keys whose value is absent, not a number, or not finite."""
    bad = []
    for key in SCHEMA:
        for value in _lookup(results, key.split(".")):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value):
                bad.append(key)
                break
    return bad
