"""docs/TRADEOFFS.md and its charts, generated from ``results.json`` (never edited by hand).

Every figure on the page comes from the results or from the cost model fed with
them; the prose around the figures says how each was measured and, for a target the
run missed, why and what would reach it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import cost
from bench.results import SCHEMA
from eventlog.config import SSE_READER_INTERVAL_SECONDS

COST_CLIENTS = (10, 100, 1_000, 10_000, 100_000, 1_000_000)
COST_EVENT_RATES = (1.0, 10.0, 60.0)
TRANSPORT_LABELS = {
    "polling": "Polling (long poll)",
    "polling_long": "Polling, long (20 s wait)",
    "polling_short": "Polling, short",
    "sse": "SSE",
    "websocket": "WebSocket",
}
COLORS = {
    "polling": "#8c6d31",
    "polling_long": "#8c6d31",
    "polling_short": "#bd9e39",
    "sse": "#3182bd",
    "websocket": "#e6550d",
}


COST_LABELS = {"polling_short": "Polling, short (every 5 s)"}
"""The cost model's short polling reads every 5 s (``cost.Load`` default)."""


def _idle_label(key: str, row: Mapping[str, Any]) -> str:
    if key == "polling_short":
        return f"Polling, short (every {row['production_interval_seconds']:g} s)"
    return TRANSPORT_LABELS[key]


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:,.1f} ms"


# --- charts ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _save(plt: Any, figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})  # no version stamp: stable files
    plt.close(figure)


def chart_latency(results: Mapping[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3))
    names = list(results["latency"])
    width = 0.25
    for offset, percentile in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        values = [results["latency"][name][percentile] for name in names]
        axes.bar(
            [i + (offset - 1) * width for i in range(len(names))],
            values,
            width,
            label=percentile.removesuffix("_ms"),
        )
    axes.set_xticks(range(len(names)), [TRANSPORT_LABELS[n] for n in names])
    axes.set_ylabel("publish -> deliver, ms")
    axes.legend()
    axes.set_title("Latency, one process publishing and receiving (local stack)")
    _save(plt, figure, path)


def chart_fanout(results: Mapping[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    sse = results["fanout"]["sse"]["rows"]
    left.plot([r["n"] for r in sse], [r["fanout_ms"] for r in sse], "o-", label="first -> last")
    left.plot(
        [r["n"] for r in sse], [r["publish_to_all_ms"] for r in sse], "s--", label="publish -> last"
    )
    left.axhline(300, color="grey", linestyle=":", label="target 300 ms")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("open streams (one process)")
    left.set_ylabel("ms")
    left.set_title("SSE: one event to N streams")
    left.legend()
    ws = results["fanout"]["websocket"]["rows"]
    workers = results["fanout"]["websocket"]["default_workers"]
    for key, label, style in (
        ("sequential_ms", "1 worker (sequential)", "o-"),
        ("concurrent_ms", f"{workers} workers (default)", "s-"),
        ("many_workers_ms", "64 workers", "^--"),
    ):
        right.plot([r["n"] for r in ws], [r[key] for r in ws], style, label=label)
    right.axhline(1000, color="grey", linestyle=":", label="target 1 s")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("connections (local API Gateway)")
    right.set_ylabel("invoke -> last socket, ms")
    right.set_title("WebSocket: one event to N connections")
    right.legend()
    _save(plt, figure, path)


def chart_wire(results: Mapping[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    per_event = results["wire"]["per_event"]
    names = list(per_event)
    totals = [
        per_event[n]["subscriber_bytes_received"] + per_event[n]["subscriber_bytes_sent"]
        for n in names
    ]
    left.bar([TRANSPORT_LABELS[n] for n in names], totals, color=[COLORS[n] for n in names])
    left.set_ylabel("bytes per delivered event")
    left.set_title("Subscriber's bytes per event")
    idle = results["wire"]["idle"]
    keys = list(idle)
    right.bar(
        [_idle_label(k, idle[k]) for k in keys],
        [idle[k]["bytes_per_minute"] for k in keys],
        color=[COLORS[k] for k in keys],
    )
    right.set_yscale("log")
    right.set_ylabel("bytes per minute")
    right.set_title("An idle client, per minute")
    right.tick_params(axis="x", labelrotation=15)
    _save(plt, figure, path)


def chart_cold_start(results: Mapping[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3))
    rows = results["cold_start"]
    names = list(rows)
    axes.barh(names, [rows[n]["shipped_ms"] for n in names], color="#756bb1")
    axes.axvline(
        rows["boto3"]["shipped_ms"] * 1.3, color="grey", linestyle=":", label="1.3 x boto3"
    )
    axes.set_xlabel("import in a fresh interpreter, ms (median)")
    axes.set_title("Cold-start proxy: import time of each Lambda entry module")
    axes.legend()
    _save(plt, figure, path)


def cost_grid(results: Mapping[str, Any]) -> dict[float, dict[int, dict[str, float]]]:
    deployment = cost.Deployment.measured(results)
    prices = cost.load_prices()
    grid: dict[float, dict[int, dict[str, float]]] = {}
    for rate in COST_EVENT_RATES:
        grid[rate] = {}
        for clients in COST_CLIENTS:
            load = cost.Load(clients=clients, events_per_minute=rate)
            grid[rate][clients] = cost.totals(
                cost.monthly_costs(load, prices=prices, deployment=deployment)
            )
    return grid


def chart_cost(grid: Mapping[float, Mapping[int, Mapping[str, float]]], path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(grid), figsize=(11, 3.4), sharey=True)
    for axis, (rate, by_clients) in zip(axes, grid.items(), strict=True):
        clients = list(by_clients)
        for name in cost.TRANSPORTS:
            axis.plot(
                clients,
                [by_clients[c][name] for c in clients],
                "o-",
                color=COLORS[name],
                label=COST_LABELS.get(name, TRANSPORT_LABELS[name]),
                markersize=3,
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("clients")
        axis.set_title(f"{rate:g} event(s) per minute")
    axes[0].set_ylabel("USD per month (us-east-1)")
    axes[0].legend(fontsize=7)
    _save(plt, figure, path)


# --- the page -------------------------------------------------------------------------------


def _header(*columns: str) -> list[str]:
    return [_row(*columns), "|" + "---|" * len(columns)]


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _target_rows(results: Mapping[str, Any]) -> list[str]:
    rows = ["| target | measured | limit | met |", "|---|---|---|---|"]
    for target in results["targets"].values():
        rows.append(
            f"| {target['what']} | {target['value']:,.2f} | {target['comparison']} "
            f"{target['limit']:,.2f} | {'yes' if target['met'] else '**no**'} |"
        )
    return rows


def _why_missed(results: Mapping[str, Any]) -> list[str]:
    """For each missed target: the measured cause, and what would reach it."""
    targets = results["targets"]
    sse = max(results["fanout"]["sse"]["rows"], key=lambda r: r["n"])
    ws = max(results["fanout"]["websocket"]["rows"], key=lambda r: r["n"])
    stub = results["fanout"]["websocket_stub"]
    lat = results["latency"]
    notes = {
        "sse_kb_per_stream": (
            f"**SSE memory per stream ({sse['kb_per_stream']:.0f} KB).** Each open stream is "
            "a uvicorn protocol object and request cycle, the suspended frames of the ASGI "
            "middleware stack (errors, CORS, exceptions, router), sse-starlette's response "
            "with its task group (the body task, the heartbeat task, the disconnect listener) "
            "and the hub's subscriber: a few dozen Python objects and four coroutines per "
            "client. What would reach 30 KB: fewer tasks per stream (the heartbeat as a "
            "timeout on the subscriber's wait instead of its own task, and no disconnect "
            "listener, since a failed write already ends the stream), and no middleware "
            "around the stream route."
        ),
        "sse_fanout_ms": (
            f"**SSE fan-out to {sse['n']:,} streams ({sse['fanout_ms']:.0f} ms).** The event is "
            "encoded once per broadcast already (`sse_service.hub`: one bytes object "
            "queued to every subscriber), so what remains is per stream: waking its task, "
            "one pass through sse-starlette and uvicorn's `send`, and one socket write, "
            f"about {sse['fanout_ms'] * 1000 / sse['n']:.0f} us each on one core. What would "
            "reach 300 ms: write the shared frame to each stream's transport from the feed "
            "in one loop (no task switch per stream), or spread the streams over more "
            "processes per task (one per vCPU)."
        ),
        "sse_streams_held": (
            f"**SSE streams held ({sse['held']:,} of {sse['n']:,}).** Streams were lost "
            "while open: check the open-files limit of the machine."
        ),
        "websocket_fanout_ms": (
            f"**WebSocket fan-out to {ws['n']:,} connections ({ws['concurrent_ms']:,.0f} ms).** "
            f"The fan-out function spends {ws['function_cpu_ms_per_post']:.2f} ms of CPU per "
            "`post_to_connection` (botocore builds, signs and parses every call), so one "
            "process cannot post faster than "
            f"{1000 / max(ws['function_cpu_ms_per_post'], 1e-9):,.0f} frames a second, "
            "whatever its thread count; the local gateway adds "
            f"{ws['gateway_cpu_ms_per_post']:.2f} ms per post on the same two cores. On "
            "AWS the fan-out function has one vCPU (1,769 MB), so the same bound holds "
            "there. What would reach 1 s: a cheaper post (SigV4-signing the request once "
            "per call and sending it over a pooled connection without botocore's "
            "machinery), or splitting a channel's subscribers over several invocations "
            "(one per page of the subscriber Query)."
        ),
        "websocket_concurrency_gain": (
            "**Sequential against concurrent, locally "
            f"({ws['sequential_over_concurrent']:.1f}x).** "
            "A local post is a loopback round trip of well under a millisecond, so there "
            "is no waiting for threads to overlap; concurrency pays only where a post "
            "waits on the network. Against a stub that answers each post after "
            f"{stub['delay_ms']:g} ms (a network round trip), the same code runs "
            f"{stub['sequential_over_concurrent']:.1f}x faster with the default workers than "
            "sequentially, and the ceiling is again the CPU per post."
        ),
        "websocket_concurrency_gain_stub": (
            f"**Sequential against concurrent, with a {stub['delay_ms']:g} ms round trip "
            f"({stub['sequential_over_concurrent']:.1f}x).** With 16 threads the ideal gain "
            "is 16x; the fan-out reaches the CPU bound per post first (see the fan-out "
            "target above), so more threads do not help and a cheaper post would."
        ),
        "websocket_p50_ms": (
            f"**WebSocket p50 latency ({lat['websocket']['p50_ms']:.0f} ms).** The path is "
            "publish (a frame, a route Lambda, a DynamoDB transaction: "
            f"{lat['websocket']['publish_ack_p50_ms']:.0f} ms to the acknowledgement "
            "locally), the stream poller (every 50 ms locally; Lambda polls a DynamoDB "
            "stream about four times a second), the fan-out's subscriber Query and the "
            "post. Locally the moto server serializes every DynamoDB call. What would reach "
            "50 ms: deliver from the publish route itself to the subscribers of the "
            "channel when there are few (skipping the stream hop), or a stream poller "
            "interval under 20 ms locally; on AWS the DynamoDB Streams hop alone has "
            "a p50 of about 200 ms (measured by bitesizedserverless.com, 'serverless "
            "messaging latency compared'), so the deployed figure is higher either way."
        ),
        "sse_p50_ms": (
            f"**SSE p50 latency ({lat['sse']['p50_ms']:.0f} ms).** Measured from the publish "
            f"call, which alone takes {lat['sse']['publish_ack_p50_ms']:.0f} ms here (an HTTP "
            "POST and a DynamoDB transaction on moto); what SSE adds after it is "
            f"{lat['sse']['after_ack_p50_ms']:.0f} ms at the median: on average half the "
            f"reader interval ({SSE_READER_INTERVAL_SECONDS * 500:.0f} ms), one read of the "
            "log and the write. What would reach the target: a shorter reader interval "
            "(each halving doubles the reader's reads, per channel per task, still "
            "independent of the clients), or waking the reader when the publish comes "
            "through the same process."
        ),
    }
    lines = []
    for key, target in targets.items():
        if target["met"]:
            continue
        if key.startswith("import_"):
            lines.append(
                f"**{target['what']} ({target['value']:.2f}).** Its module imports an SDK or "
                "library at load time; import it on first use instead."
            )
        elif key in notes:
            lines.append(notes[key])
    return lines


def _crossovers(grid: Mapping[float, Mapping[int, Mapping[str, float]]]) -> list[str]:
    rows = ["| events/min | " + " | ".join(f"{c:,} clients" for c in COST_CLIENTS) + " |"]
    rows.append("|---|" + "---|" * len(COST_CLIENTS))
    for rate, by_clients in grid.items():
        cells = []
        for clients in COST_CLIENTS:
            totals = by_clients[clients]
            best = min(totals, key=lambda name: totals[name])
            cells.append(f"{COST_LABELS.get(best, TRANSPORT_LABELS[best])} ${totals[best]:,.0f}")
        rows.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    return rows


def _keys_table() -> list[str]:
    rows = ["| key | meaning |", "|---|---|"]
    rows += [f"| `{key}` | {meaning} |" for key, meaning in SCHEMA.items()]
    return rows


def render_page(
    results: Mapping[str, Any], grid: Mapping[float, Mapping[int, Mapping[str, float]]]
) -> str:
    meta = results["meta"]
    lat = results["latency"]
    per_event = results["wire"]["per_event"]
    idle = results["wire"]["idle"]
    sse_rows = results["fanout"]["sse"]["rows"]
    ws = results["fanout"]["websocket"]
    stub = results["fanout"]["websocket_stub"]
    cold = results["cold_start"]
    assets = results["assets"]
    memory = results["memory"]
    largest_ws = max(ws["rows"], key=lambda r: r["n"])
    example = cost.Load(clients=10_000, events_per_minute=6)
    example_costs = cost.totals(
        cost.monthly_costs(example, deployment=cost.Deployment.measured(results))
    )
    why = _why_missed(results)
    lines = [
        "# Measured tradeoffs: polling, SSE and WebSocket",
        "",
        "<!-- Generated by `make bench` (python -m bench) from bench/results.json; "
        "do not edit. -->",
        "",
        f"Every figure below was measured in one **{meta['mode']}** run on one machine "
        f"({meta['cpus']} CPUs, {meta['machine']}, Python {meta['python']}) on {meta['date']}, "
        f"seed {meta['seed']}, against the {meta['stack']} stack, in "
        f"{meta['duration_seconds']:.0f} s. The numbers are for comparing the transports "
        "with each other on the same machine; a deployed stack adds network round trips "
        "(`python -m bench --outputs .local/deployed-outputs.json` measures one). On a "
        "2-core machine the CPU-bound fan-outs vary between runs (by up to a third in "
        "our runs): compare figures within one run. The raw "
        "figures are in [bench/results.json](../bench/results.json); the keys are listed "
        "at the end.",
        "",
        "## Targets",
        "",
        *_target_rows(results),
        "",
    ]
    if why:
        lines += ["### Why a target was missed, and what would reach it", ""]
        for note in why:
            lines += [f"- {note}", ""]
    lines += [
        "## Latency",
        "",
        "![latency](charts/latency.png)",
        "",
        "One process publishes and receives, so one clock times both ends: from just "
        "before the publish call to the moment the reference client hands the event to "
        "the application. Before each publish the benchmark pauses a random time "
        "(seeded), so events land at every phase of the poll loop, the reader interval "
        "and the stream poller.",
        "",
        *_header(
            "transport",
            "p50",
            "p95",
            "p99",
            "mean",
            "the publish call alone (p50)",
            "deliver minus the publish call (p50)",
            "samples",
        ),
    ]
    for name, row in lat.items():
        lines.append(
            f"| {TRANSPORT_LABELS[name]} | {_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} | "
            f"{_ms(row['p99_ms'])} | {_ms(row['mean_ms'])} | {_ms(row['publish_ack_p50_ms'])} "
            f"| {_ms(row['after_ack_p50_ms'])} | {row['samples']} |"
        )
    lines += [
        "",
        "- **Polling** (long poll, `wait=20`): the waiting request re-reads the log after "
        "0.1, 0.2, 0.4 s and then every 0.5 s, so an event waits up to one pause.",
        f"- **SSE**: one reader per channel per process polls the log every "
        f"{SSE_READER_INTERVAL_SECONDS * 1000:.0f} ms; an event waits half of that on average.",
        "- **WebSocket**: publish, then the DynamoDB stream (polled every 50 ms by the local "
        "stack's event source mapping), then the fan-out function's posts.",
        "",
        "## On the wire",
        "",
        "![wire](charts/wire.png)",
        "",
        "Counted by the reference client (`client.stats`): HTTP/1.1 request lines, headers "
        "and bodies; WebSocket frame payloads; no TLS or TCP overhead.",
        "",
        *_header(
            "per delivered event",
            "requests sent",
            "bytes received",
            "bytes sent",
            "publisher requests",
            "publisher bytes (sent + received)",
        ),
    ]
    for name, row in per_event.items():
        lines.append(
            f"| {TRANSPORT_LABELS[name]} | {row['subscriber_requests']:.2f} | "
            f"{row['subscriber_bytes_received']:.0f} | {row['subscriber_bytes_sent']:.0f} | "
            f"{row['publisher_requests']:.2f} | "
            f"{row['publisher_bytes_sent'] + row['publisher_bytes_received']:.0f} |"
        )
    lines += [
        "",
        *_header(
            "an idle client",
            "requests / min",
            "bytes / min",
            "bytes per cycle",
            "measured at",
            "scaled to",
        ),
    ]
    for key, row in idle.items():
        lines.append(
            f"| {_idle_label(key, row)} | {row['requests_per_minute']:.1f} | "
            f"{row['bytes_per_minute']:,.0f} | {row['bytes_per_cycle']:.0f} | "
            f"every {row['measured_interval_seconds']:g} s for {row['window_seconds']:g} s "
            f"({row['cycles_measured']:.0f} cycles) | "
            f"every {row['production_interval_seconds']:g} s |"
        )
    lines += [
        "",
        "A cycle is one empty poll (its 304 answer), one SSE heartbeat comment, or one "
        "WebSocket `ping` action and its `pong`. The idle clients run together, during the "
        "latency measurement, on channels nobody publishes to; the per-minute figures are "
        "`bytes per cycle x 60 / interval` at the production interval (the client's "
        "long-poll wait and keep-alive, the service's heartbeat). A quick run shortens "
        "the intervals to see several cycles in seconds; a full run measures at the "
        "production intervals, so its scaling factor is 1. Each WebSocket ping is also "
        "two billed messages and one Lambda invocation; each poll is one billed request "
        "and invocation.",
        "",
        "## Fan-out",
        "",
        "![fan-out](charts/fanout.png)",
        "",
        "### SSE: one process, N streams",
        "",
        "`bench/sse_fanout.py`: the service as the container runs it (`python -m "
        "sse_service`: uvicorn, uvloop, httptools) over moto, N raw-socket clients in "
        "the benchmark's process, each broadcast timed from the publish call.",
        "",
        *_header(
            "streams",
            "held",
            "open s",
            "KB / stream",
            "server RSS MB",
            "publish -> first",
            "publish -> last",
            "first -> last",
            "worst first -> last",
        ),
    ]
    for row in sse_rows:
        lines.append(
            f"| {row['n']:,} | {row['held']:,} | {row['open_seconds']:.1f} | "
            f"{row['kb_per_stream']:.1f} | {row['rss_mb']:.0f} | {_ms(row['publish_to_first_ms'])} "
            f"| {_ms(row['publish_to_all_ms'])} | {_ms(row['fanout_ms'])} | "
            f"{_ms(row['fanout_max_ms'])} |"
        )
    lines += [
        "",
        "*publish -> first* includes the wait for the shared reader (up to one interval); "
        "*first -> last* is the cost of handing one event to N streams.",
        "",
        "### WebSocket: the local API Gateway and the real fan-out handler",
        "",
        "`bench/gateway_fanout.py`: `local.websocket_gateway` running the real route "
        "handlers (so every client made a real `$connect` and `subscribe`), N raw "
        "WebSocket clients, and the real Lambda entry point `websocket_api.fanout.handler` "
        "in its own process, invoked with a DynamoDB stream record as the event source "
        "mapping would (the stream hop itself is timed in the latency above). Timed from "
        "the invocation to the event's arrival on the last socket: the subscriber Query "
        "plus N `post_to_connection` calls.",
        "",
        *_header(
            "connections",
            "1 worker (sequential)",
            f"{ws['default_workers']} workers (default)",
            "64 workers",
            "sequential / default",
            "first socket",
            "function CPU per post",
            "gateway CPU per post",
            "connect + subscribe all",
        ),
    ]
    for row in ws["rows"]:
        lines.append(
            f"| {row['n']:,} | {_ms(row['sequential_ms'])} | {_ms(row['concurrent_ms'])} | "
            f"{_ms(row['many_workers_ms'])} | {row['sequential_over_concurrent']:.1f}x | "
            f"{_ms(row['first_ms'])} | {row['function_cpu_ms_per_post']:.2f} ms | "
            f"{row['gateway_cpu_ms_per_post']:.2f} ms | {row['open_seconds']:.1f} s |"
        )
    lines += [
        "",
        f"Against a stub of the @connections API that answers each post after "
        f"{stub['delay_ms']:g} ms, like a network round trip (`bench/websocket_fanout.py`, "
        f"the real `Fanout` and boto3 client, {stub['connections']:,} connections): "
        f"{_ms(stub['sequential_ms'])} sequential, {_ms(stub['concurrent_ms'])} with "
        f"{ws['default_workers']} workers, {_ms(stub['many_workers_ms'])} with 64: "
        f"**{stub['sequential_over_concurrent']:.1f}x** faster concurrent. Locally "
        f"({largest_ws['n']:,} connections through the gateway) the ratio is "
        f"{largest_ws['sequential_over_concurrent']:.1f}x, because a loopback post has "
        "nothing to wait for: the CPU per post is the whole cost.",
        "",
        "## Cold start and assets",
        "",
        "![cold start](charts/cold_start.png)",
        "",
        "Import time of each Lambda entry module in a fresh interpreter (median): "
        "*compiled* with every module's bytecode cached; *from source* with the project's "
        "own packages compiled at import (a zip without bytecode), the rest cached, as "
        "the runtime's boto3 is.",
        "",
        *_header("module", "compiled", "from source", "/ bare `import boto3` (from source)"),
    ]
    for key, row in cold.items():
        ratio = "1.00 (the reference)" if key == "boto3" else f"{row['ratio_to_boto3']:.2f}"
        lines.append(
            f"| `{key}` | {_ms(row['compiled_ms'])} | {_ms(row['shipped_ms'])} | {ratio} |"
        )
    lines += ["", *_header("Lambda asset", "zip", "unpacked", "bytecode files")]
    for key, row in assets.items():
        lines.append(
            f"| {key} | {row['zip_kb']:,.0f} KB | {row['unpacked_kb']:,.0f} KB | "
            f"{row['pyc_files']:,.0f} |"
        )
    compiled = all(row["pyc_files"] > 0 for row in assets.values())
    lines += [
        "",
        "Assets are bundled by `infra.lambda_code.bundle` (what `cdk synth` runs) for "
        "arm64 / Python 3.12. "
        + (
            "They ship bytecode compiled for Python 3.12, so a cold start does not compile "
            "(the *compiled* column is the closer proxy). "
            if compiled
            else "This run found no Python 3.12 to compile them with (`LAMBDA_PYTHON`), so "
            "they ship without bytecode and their modules compile at every cold start, "
            "the polling function's FastAPI and pydantic included. "
        )
        + "The WebSocket functions ship only the project's own modules (boto3 comes with "
        "the runtime) and load no SDK until a handler needs one.",
        "",
        "## Memory per client on the server",
        "",
        "| | per client |",
        "|---|---|",
        _row(
            f"SSE: server memory per open stream (at {max(r['n'] for r in sse_rows):,} streams)",
            f"{memory['sse_kb_per_stream']:.1f} KB",
        ),
        _row(
            "SSE: streams per task (the service's cap, `SSE_MAX_STREAMS`)",
            f"{memory['sse_streams_per_task']:,}",
        ),
        _row(
            "WebSocket: local gateway memory per connection (it stands in for API Gateway, "
            "which holds the sockets on AWS and bills connection-minutes instead)",
            f"{memory['websocket_gateway_kb_per_connection']:.1f} KB",
        ),
        _row(
            "WebSocket: DynamoDB items per subscribed connection",
            f"{memory['websocket_items_per_connection']:.0f}",
        ),
        _row(
            "WebSocket: their size as DynamoDB bills capacity",
            f"{memory['websocket_item_bytes_per_connection']:.0f} bytes",
        ),
        _row(
            "WebSocket: their stored size (100 bytes per item and per index entry, "
            "keys-only index)",
            f"{memory['websocket_storage_bytes_per_connection']:.0f} bytes",
        ),
        "",
        "## Cost on AWS",
        "",
        "![cost](charts/cost.png)",
        "",
        "`python -m bench.cost --clients N --events-per-minute E --poll-interval S --hours H` "
        "(`make cost`) prints the monthly bill of each transport with its line items, "
        "from the prices in [bench/prices.json](../bench/prices.json) (us-east-1, each "
        "with its date and source) and the figures measured here. How each transport "
        "spends is in the docstring of [bench/cost.py](../bench/cost.py). The chart "
        "assumes one channel, short polling every 5 s, long polling with 20 s waits, "
        "730 hours.",
        "",
        "Example, 10,000 clients and 6 events a minute: "
        + ", ".join(
            f"{COST_LABELS.get(name, TRANSPORT_LABELS[name])} ${total:,.0f}"
            for name, total in sorted(example_costs.items(), key=lambda kv: kv[1])
        )
        + " a month.",
        "",
        "Where the cheapest transport changes (cheapest, and its monthly cost):",
        "",
        *_crossovers(grid),
        "",
        "- **Polling** pays per request whether or not anything happened, and a long poll "
        "on Lambda pays for the whole wait: the cheapest only for a few clients.",
        "- **WebSocket** pays per message: every event to every client is one message, "
        "plus a ping and a pong a minute per client. Cheap while events are rare; the "
        "bill grows with clients x events.",
        "- **SSE** pays for running tasks and the load balancer, about flat until the "
        "streams need more tasks, and its log reads do not grow with clients. It has a "
        "floor (two tasks and an ALB, around $80 a month) and wins once clients x events "
        "are large.",
        "",
        "## Keys of results.json",
        "",
        "Stable across runs and modes; `[]` is a list with one element per N. "
        "`targets` repeats the targets above (value, limit, met).",
        "",
        *_keys_table(),
        "",
    ]
    return "\n".join(lines)


def render_snippet(results: Mapping[str, Any]) -> str:
    """The README's comparison table: every cell a measured figure or a cited limit."""
    lat = results["latency"]
    per_event = results["wire"]["per_event"]
    idle = results["wire"]["idle"]
    sse = max(results["fanout"]["sse"]["rows"], key=lambda r: r["n"])
    ws = max(results["fanout"]["websocket"]["rows"], key=lambda r: r["n"])
    stub = results["fanout"]["websocket_stub"]
    memory = results["memory"]
    code = results["complexity"]
    cold = results["cold_start"]
    load = cost.Load(clients=10_000, events_per_minute=6)
    costs = cost.totals(cost.monthly_costs(load, deployment=cost.Deployment.measured(results)))

    def bytes_per_event(name: str) -> str:
        row = per_event[name]
        return f"{row['subscriber_bytes_received'] + row['subscriber_bytes_sent']:,.0f} B"

    def latency(name: str) -> str:
        row = lat[name]
        return f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms"

    rows = [
        (
            "Direction",
            "client asks; publish is a `POST`",
            "server to client only; publish over the polling API",
            "both ways on one socket (`subscribe`, `publish`, `ping` frames)",
        ),
        (
            "Latency, publish to deliver (local)",
            f"{latency('polling')}: a waiting request re-reads the log every 0.1-0.5 s",
            f"{latency('sse')}: one reader per channel polls every "
            f"{SSE_READER_INTERVAL_SECONDS * 1000:.0f} ms",
            f"{latency('websocket')} locally; on AWS the DynamoDB stream hop alone is "
            "about 200 ms p50 (bitesizedserverless.com, serverless messaging latency)",
        ),
        (
            "Bytes per delivered event (subscriber)",
            f"{bytes_per_event('polling')}: a request and a response, headers and token",
            f"{bytes_per_event('sse')}: `id:` and `data:` lines",
            f"{bytes_per_event('websocket')}: one frame",
        ),
        (
            "An idle client, per minute",
            f"{idle['polling_long']['requests_per_minute']:.0f} requests, "
            f"{idle['polling_long']['bytes_per_minute']:,.0f} B (long poll, 20 s waits); "
            f"{idle['polling_short']['requests_per_minute']:.0f} requests, "
            f"{idle['polling_short']['bytes_per_minute']:,.0f} B polling every second",
            f"{60 / idle['sse']['production_interval_seconds']:.0f} heartbeats, "
            f"{idle['sse']['bytes_per_minute']:,.0f} B",
            f"{idle['websocket']['requests_per_minute']:.0f} ping + pong, "
            f"{idle['websocket']['bytes_per_minute']:,.0f} B (2 billed messages, 1 Lambda "
            "invocation)",
        ),
        (
            "Binary data",
            "JSON bodies (HTTP API payloads up to 10 MB); binary only as base64",
            "UTF-8 text only (`text/event-stream`); binary only as base64",
            "API Gateway rejects inbound binary frames (close 1003); 32 KB frames, 128 KB messages",
        ),
        (
            "Complexity (Python, runtime + construct)",
            f"{code['polling']['python_lines']:,} lines; one stateless function",
            f"{code['sse']['python_lines']:,} lines; a container service, an ALB, a VPC, draining",
            f"{code['websocket']['python_lines']:,} lines; 7 route functions, an "
            "authorizer, a fan-out function, a connections table",
        ),
        (
            "Scalability",
            "every client costs requests whether or not anything happens; each waiting "
            "long poll holds a Lambda (1,000 concurrent by default per account)",
            f"one process held {sse['held'] - 1:,} streams at "
            f"{memory['sse_kb_per_stream']:.0f} KB each and handed one event to all in "
            f"{sse['fanout_ms']:,.0f} ms; more tasks for more streams",
            f"API Gateway holds the sockets (500 new connections/s per account, adjustable); "
            f"one event to {ws['n']:,} connections took {ws['concurrent_ms']:,.0f} ms "
            f"locally ({ws['function_cpu_ms_per_post']:.1f} ms of CPU per post); with a "
            f"{stub['delay_ms']:g} ms network round trip, "
            f"{stub['sequential_over_concurrent']:.1f}x faster concurrent than sequential",
        ),
        (
            "State on the server",
            "none: the client keeps its cursor",
            "open streams in the task (a stopped task's clients resume by "
            "`Last-Event-ID`); one reader per channel per task",
            f"{memory['websocket_items_per_connection']:.0f} DynamoDB items "
            f"({memory['websocket_item_bytes_per_connection']:.0f} B) per subscribed "
            "connection; `$disconnect` is best effort, TTL cleans up",
        ),
        (
            "AWS limits that shape it",
            "HTTP API cuts requests at 30 s, so `wait` is at most 25 s",
            "ALB idle timeout 60 s, so a heartbeat every 15 s",
            "connections last at most 2 h and idle out after 10 min; no broadcast: N "
            "receivers are N `post_to_connection` calls (10,000 rps per account)",
        ),
        (
            "Cold start proxy (import time)",
            f"{cold['polling_handler']['shipped_ms']:.0f} ms (FastAPI + Mangum), "
            f"{cold['polling_handler']['ratio_to_boto3']:.1f}x `import boto3`",
            "none: a long-running task",
            f"{cold['websocket_routes']['shipped_ms']:.0f} ms per route, "
            f"{cold['websocket_routes']['ratio_to_boto3']:.2f}x `import boto3`",
        ),
        (
            "Cost, 10,000 clients, 6 events/min (us-east-1, month)",
            f"${costs['polling_short']:,.0f} polling every 5 s; ${costs['polling_long']:,.0f} "
            "long polling",
            f"${costs['sse']:,.0f}",
            f"${costs['websocket']:,.0f}",
        ),
        (
            "Best for",
            "few clients, rare updates, clients that cannot hold a connection",
            "many clients x frequent events, one-way feeds (dashboards, notifications)",
            "two-way interaction (chat, presence, collaborative editing), or few "
            "clients and rare events",
        ),
    ]
    lines = [
        "## Polling, SSE or WebSocket?",
        "",
        "<!-- Generated by `make bench` from bench/results.json with the page "
        "docs/TRADEOFFS.md; paste into README.md. -->",
        "",
        f"Measured on one machine in one run ({results['meta']['date'][:10]}, local stack: "
        "relative, not absolute, numbers); limits from the AWS documentation "
        "([docs/TRADEOFFS.md](docs/TRADEOFFS.md) has the method, every figure and the "
        "charts; `make cost` prices any other load).",
        "",
        *_header("", "Polling", "SSE", "WebSocket"),
        *(_row(f"**{name}**", *cells) for name, *cells in rows),
        "",
    ]
    return "\n".join(lines)


def write_page(results: Mapping[str, Any], *, page: Path, charts: Path) -> None:
    charts.mkdir(parents=True, exist_ok=True)
    page.parent.mkdir(parents=True, exist_ok=True)
    grid = cost_grid(results)
    chart_latency(results, charts / "latency.png")
    chart_fanout(results, charts / "fanout.png")
    chart_wire(results, charts / "wire.png")
    chart_cold_start(results, charts / "cold_start.png")
    chart_cost(grid, charts / "cost.png")
    text = render_page(results, grid)
    page.write_text(text if text.endswith("\n") else text + "\n")
    (page.parent / "COMPARISON_SNIPPET.md").write_text(render_snippet(results).rstrip() + "\n")
