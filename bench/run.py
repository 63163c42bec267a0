"""One benchmark run: every measurement in turn, then ``results.json``, the page and the charts.

The order keeps measurements from disturbing each other: imports first (a quiet
machine), the stub fan-out (it posts from this process, best while it is small),
then the stack-based measurements, then each fan-out with its own servers, each
stopped before the next starts, the 10,000 SSE streams last.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    footprint,
    gateway_fanout,
    hot_channel,
    latency,
    sse_fanout,
    sse_idle,
    sse_stalled,
    websocket_fanout,
)
from bench.plan import PRODUCTION_IDLE, SEED, Plan
from bench.results import missing_or_not_numeric
from bench.stack import given_stack, local_stack
from eventlog.config import DEFAULT_FANOUT_WORKERS, SSE_MAX_STREAMS
from local.transports import PACKAGES, absent_transports

MANY_WORKERS = 64


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _timed(label: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    _say(f"{label}...")
    result = step()
    _say(f"{label}: {time.perf_counter() - started:.1f} s")
    return result


def _settle() -> None:
    """Collect what the last step left, and keep the garbage collector off the survivors.

    The clients of a step run in this process; without this, collections that scan the
    objects of earlier steps would land inside a later step's timings.
    """
    gc.collect()
    gc.freeze()


def _stack_measurements(plan: Plan, *, outputs: Path | None, token: str | None) -> dict[str, Any]:
    from bench.auth import bench_token

    if outputs is None:
        # Only a stack started here can shorten the server's heartbeat for a quick run.
        heartbeat = {"SSE_HEARTBEAT_SECONDS": str(plan.idle.sse_heartbeat_seconds)}
        stack_context = local_stack(environment=heartbeat)
        idle = plan.idle
    else:
        stack_context = given_stack(outputs)
        idle = replace(PRODUCTION_IDLE)
    with stack_context as stack:
        tokens = bench_token(stack.endpoints, token)
        measured: dict[str, Any] = asyncio.run(
            latency.measure(
                stack.endpoints,
                plan=plan,
                idle=idle,
                production=PRODUCTION_IDLE,
                token=tokens,
            )
        )
        measured["sse_idle"] = _timed(
            f"SSE log reads with {plan.idle_sse_channels} idle channels",
            lambda: asyncio.run(
                sse_idle.measure(
                    stack.endpoints,
                    channels=plan.idle_sse_channels,
                    seconds=plan.idle_sse_seconds,
                    token=tokens,
                )
            ),
        )
        measured["hot_channel"] = _timed(
            f"hot channel with {plan.hot_publishers} publishers",
            lambda: asyncio.run(
                hot_channel.measure(
                    stack.endpoints,
                    counts=plan.hot_publishers,
                    publishes_each=plan.hot_publishes_each,
                    token=tokens,
                )
            ),
        )
        return measured


def _latency_section(measured: dict[str, Any]) -> dict[str, Any]:
    section = {}
    for name, row in measured["transports"].items():
        ms = row["latency_ms"]
        section[name] = {
            "p50_ms": ms["p50"],
            "p95_ms": ms["p95"],
            "p99_ms": ms["p99"],
            "mean_ms": ms["mean"],
            "max_ms": ms["max"],
            "samples": ms["samples"],
            "publish_ack_p50_ms": row["publish_ack_ms"]["p50"],
            "after_ack_p50_ms": row["after_ack_ms"]["p50"],
        }
    return section


def _sse_section(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rows": [
            {
                "n": row["streams"],
                "held": row["held"],
                "open_seconds": row["open_seconds"],
                "kb_per_stream": row["kb_per_stream"],
                "rss_mb": row["rss_mb"],
                "publish_to_first_ms": row["first_ms"],
                "publish_to_all_ms": row["all_ms"],
                "fanout_ms": row["fanout_ms"],
                "fanout_max_ms": row["fanout_max_ms"],
                "rounds": row["rounds"],
            }
            for row in rows
        ]
    }


def _websocket_section(measured: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for n, row in sorted(measured["connections"].items(), key=lambda item: int(item[0])):
        workers = row["workers"]
        default = workers[str(DEFAULT_FANOUT_WORKERS)]
        rows.append(
            {
                "n": int(n),
                "open_seconds": row["open_seconds"],
                "sequential_ms": workers["1"]["all_ms"],
                "concurrent_ms": default["all_ms"],
                "many_workers_ms": workers[str(MANY_WORKERS)]["all_ms"],
                "first_ms": default["first_ms"],
                "handler_ms": default["handler_ms"],
                "sequential_over_concurrent": workers["1"]["all_ms"] / default["all_ms"],
                "function_cpu_ms_per_post": default["function_cpu_ms_per_post"],
                "gateway_cpu_ms_per_post": default["gateway_cpu_ms_per_post"],
                "sequential_function_cpu_ms_per_post": workers["1"]["function_cpu_ms_per_post"],
            }
        )
    return {"rows": rows, "default_workers": DEFAULT_FANOUT_WORKERS}


def _stub_section(
    seconds: dict[int, float], *, connections: int, delay_ms: float
) -> dict[str, Any]:
    sequential = seconds[1] * 1000
    concurrent = seconds[DEFAULT_FANOUT_WORKERS] * 1000
    return {
        "connections": connections,
        "delay_ms": delay_ms,
        "sequential_ms": sequential,
        "concurrent_ms": concurrent,
        "many_workers_ms": seconds[MANY_WORKERS] * 1000,
        "sequential_over_concurrent": sequential / concurrent,
    }


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The figures the comparison promises, each with its limit and whether it was met."""
    sse = max(results["fanout"]["sse"]["rows"], key=lambda row: row["n"])
    ws = max(results["fanout"]["websocket"]["rows"], key=lambda row: row["n"])
    stub = results["fanout"]["websocket_stub"]
    lat = results["latency"]
    checks: dict[str, tuple[float, str, float, str]] = {
        "sse_streams_held": (
            sse["held"],
            ">=",
            sse["n"],
            f"SSE streams held in one process (N={sse['n']:,})",
        ),
        "sse_kb_per_stream": (sse["kb_per_stream"], "<=", 30.0, "SSE KB per open stream"),
        "sse_fanout_ms": (
            sse["fanout_ms"],
            "<=",
            300.0,
            f"SSE: one event to all {sse['n']:,} streams, ms",
        ),
        "websocket_fanout_ms": (
            ws["concurrent_ms"],
            "<=",
            1000.0,
            f"WebSocket: one event to {ws['n']:,} connections, ms",
        ),
        # The local sequential / concurrent ratio is reported, not promised: on loopback
        # nothing waits, so it measures only CPU, which this figure states directly.
        "websocket_cpu_ms_per_post": (
            ws["function_cpu_ms_per_post"],
            "<=",
            0.5,
            f"WebSocket fan-out CPU per post, ms (N={ws['n']:,}, default workers)",
        ),
        "websocket_concurrency_gain_stub": (
            stub["sequential_over_concurrent"],
            ">=",
            10.0,
            f"WebSocket fan-out, sequential / concurrent ({stub['delay_ms']:g} ms stub)",
        ),
        "websocket_p50_ms": (lat["websocket"]["p50_ms"], "<=", 50.0, "WebSocket p50 latency, ms"),
        # Pushed by the broker, SSE no longer waits for a reader interval: it must do no
        # worse than WebSocket, whose path (stream, fan-out, post) is the same length.
        "sse_p50_ms": (
            lat["sse"]["p50_ms"],
            "<=",
            lat["websocket"]["p50_ms"],
            "SSE p50 latency, ms (no worse than WebSocket's)",
        ),
    }
    idle_sse = results["sse_idle"]
    checks["sse_idle_log_reads_per_second"] = (
        idle_sse["log_reads_per_second"],
        "<=",
        0.0,
        f"SSE: log reads per second with {idle_sse['channels']:,} idle channels open "
        f"(polling each would be {idle_sse['polling_reads_per_second']:,.0f})",
    )
    hot = results["hot_channel"]["rows"]
    alone = next(row for row in hot if row["publishers"] == 1)
    most = max(hot, key=lambda row: row["publishers"])
    checks["hot_channel_failures"] = (
        sum(row["failures"] for row in hot),
        "<=",
        0,
        f"Hot channel: failed publishes, 1 to {most['publishers']} publishers",
    )
    checks["hot_channel_scaling"] = (
        min(row["publishes_per_second"] for row in hot) / alone["publishes_per_second"],
        ">=",
        1.0,
        "Hot channel: lowest publishes/s over the 1-publisher figure",
    )
    checks["hot_channel_p99_ms"] = (
        most["p99_ms"],
        "<=",
        1000.0,
        f"Hot channel: publish p99 with {most['publishers']} publishers, ms",
    )
    checks.update(footprint.import_checks(results["cold_start"]))
    return {
        key: {
            "value": value,
            "comparison": comparison,
            "limit": limit,
            "met": value <= limit if comparison == "<=" else value >= limit,
            "what": what,
        }
        for key, (value, comparison, limit, what) in checks.items()
    }


BYTECODE_CACHE = Path(tempfile.gettempdir()) / "realtime-delivery-bench-bytecode"
"""Kept between runs (bytecode is checked against its source, so it is never stale)."""


@contextlib.contextmanager
def _shared_bytecode() -> Iterator[None]:
    """Let the many interpreters a run starts share one bytecode cache.

    A machine with ``PYTHONDONTWRITEBYTECODE`` set would otherwise compile every
    module from source in every server and function process it starts.
    """
    names = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(BYTECODE_CACHE)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class TransportsMissing(RuntimeError):
    """The benchmark compares the three transports; this checkout lacks one."""


def measure(plan: Plan, *, outputs: Path | None, token: str | None) -> dict[str, Any]:
    absent = absent_transports()
    if absent:
        # Every table and chart compares the three: a partial run would write a page that
        # says less than it seems to (the cost model, `make cost`, still prices all three).
        raise TransportsMissing(
            f"make bench compares the three transports, and this checkout has no "
            f"{', '.join(absent)} (functions/{', functions/'.join(PACKAGES[n] for n in absent)})"
        )
    with _shared_bytecode():
        return _measure(plan, outputs=outputs, token=token)


def _measure(plan: Plan, *, outputs: Path | None, token: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    imports = _timed("import times", lambda: footprint.measure_imports(runs=plan.import_runs))
    assets = _timed("Lambda assets", footprint.measure_assets)
    footprint.add_ratios(imports, bytecode=footprint.ships_bytecode(assets))
    workers = tuple(sorted({1, DEFAULT_FANOUT_WORKERS, MANY_WORKERS}))
    # The stub's fan-out runs in this process: measured first, while the process is small.
    with contextlib.redirect_stdout(sys.stderr):
        stub = _timed(
            f"WebSocket fan-out against a {plan.stub_delay_ms:g} ms stub",
            lambda: websocket_fanout.measure_fanout(
                plan.stub_connections,
                plan.stub_delay_ms / 1000,
                list(workers),
                0,
                rounds=plan.stub_rounds,
                quiet=True,
            ),
        )
    stack = _timed(
        "latency and wire costs", lambda: _stack_measurements(plan, outputs=outputs, token=token)
    )
    _settle()
    websocket = _timed(
        f"WebSocket fan-out through the gateway to {plan.websocket_counts}",
        lambda: gateway_fanout.run(
            counts=plan.websocket_counts,
            workers=workers,
            rounds=plan.websocket_rounds,
        ),
    )
    _settle()
    sse_rows = _timed(
        f"SSE fan-out to {plan.sse_counts}",
        lambda: sse_fanout.run(list(plan.sse_counts), rounds=plan.sse_rounds),
    )
    largest_sse = max(sse_rows, key=lambda row: row["streams"])
    _settle()
    stalled = _timed(
        f"SSE memory with {plan.sse_stalled_readers} stalled readers on a busy channel",
        lambda: sse_stalled.run(plan.sse_stalled_readers, plan.sse_stalled_events),
    )
    _say(
        f"{stalled['readers']} stalled readers: server RSS +{stalled['rss_growth_mb']:.1f} MiB "
        f"({stalled['kb_per_reader']:.0f} KiB each) over {stalled['published_mb']:.0f} MiB "
        f"published; {stalled['cut']} cut; most held by one {stalled['peak_held_kb']:.0f} KiB"
    )
    results: dict[str, Any] = {
        "meta": {
            "mode": plan.name,
            "seed": SEED,
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "python": platform.python_version(),
            "cpus": os.cpu_count() or 0,
            "machine": platform.machine(),
            "stack": "local" if outputs is None else "endpoints file",
            "duration_seconds": 0.0,
        },
        "latency": _latency_section(stack),
        "wire": {"per_event": {k: v["per_event"] for k, v in stack["transports"].items()}},
        "fanout": {
            "sse": _sse_section(sse_rows),
            "websocket": _websocket_section(websocket),
            "websocket_stub": _stub_section(
                stub, connections=plan.stub_connections, delay_ms=plan.stub_delay_ms
            ),
        },
        "hot_channel": stack["hot_channel"],
        "sse_idle": {k: v for k, v in stack["sse_idle"].items() if k != "broker"},
        "cold_start": imports,
        "assets": assets,
        "complexity": footprint.code_size(),
        "memory": {
            "sse_kb_per_stream": largest_sse["kb_per_stream"],
            "sse_streams_per_task": SSE_MAX_STREAMS,
            "sse_stalled_readers": stalled["readers"],
            "sse_stalled_published_mb": stalled["published_mb"],
            "sse_stalled_rss_growth_mb": stalled["rss_growth_mb"],
            "sse_stalled_kb_per_reader": stalled["kb_per_reader"],
            "sse_stalled_cut": stalled["cut"],
            "sse_stalled_peak_held_kb": stalled["peak_held_kb"],
            "websocket_gateway_kb_per_connection": websocket["gateway_kb_per_connection"],
            "websocket_items_per_connection": websocket["items_per_connection"],
            "websocket_item_bytes_per_connection": websocket["item_bytes_per_connection"],
            "websocket_storage_bytes_per_connection": websocket["storage_bytes_per_connection"],
        },
    }
    results["hot_channel"]["date"] = results["meta"]["date"]
    results["wire"]["idle"] = stack["idle"]
    results["targets"] = targets(results)
    results["meta"]["duration_seconds"] = time.perf_counter() - started
    return results


def write(results: dict[str, Any], *, results_file: Path, page: Path, charts: Path) -> None:
    from bench import report

    missing = missing_or_not_numeric(results)
    if missing:
        raise RuntimeError(f"results without a number: {', '.join(missing)}")
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    report.write_page(results, page=page, charts=charts)
