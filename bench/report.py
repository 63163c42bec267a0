"""docs/TRADEOFFS.md and its charts, generated from ``results.json`` (never edited by hand).

Every figure on the page comes from the results or from the cost model fed with
them; the prose around the figures says how each was measured and, for a target the
run missed, why and what would reach it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import aws_estimate, cost, footprint
from bench.charts import (
    chart_cold_start,
    chart_cost,
    chart_fanout,
    chart_latency,
    chart_wire,
    cost_grid,
)
from bench.labels import (
    COST_CLIENTS,
    COST_LABELS,
    TRANSPORT_LABELS,
    idle_label,
    ms,
    table_header,
    table_row,
)
from bench.missed import why_missed
from bench.results import SCHEMA
from eventlog.config import SSE_READER_INTERVAL_SECONDS
from local.stream_mapping import POLL_INTERVAL_SECONDS

# --- the page -------------------------------------------------------------------------------


def _target_rows(results: Mapping[str, Any]) -> list[str]:
    rows = ["| target | measured | limit | met |", "|---|---|---|---|"]
    for target in results["targets"].values():
        rows.append(
            f"| {target['what']} | {target['value']:,.2f} | {target['comparison']} "
            f"{target['limit']:,.2f} | {'yes' if target['met'] else '**no**'} |"
        )
    return rows


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


def _aws_estimate_lines(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "### Expected on AWS (an estimate, not a measurement)",
        "",
        "Nothing here ran on AWS. Each estimate is the local figure with the DynamoDB "
        "stream hop swapped for AWS's, as measured in a region "
        f"({aws_estimate.STREAM_TO_LAMBDA.source}). Not included: API Gateway's and the "
        "load balancer's own processing (AWS publishes no figure) and your clients' round "
        "trip to the region (`bench/aws_estimate.py` says why each hop is treated as it is).",
        "",
        *table_header("transport", "local p50 / p99", "expected on AWS p50 / p99", "how"),
    ]
    for name, row in aws_estimate.estimates(results).items():
        lines.append(
            table_row(
                TRANSPORT_LABELS[name],
                f"{ms(row.local_p50_ms)} / {ms(row.local_p99_ms)}",
                f"about {ms(row.p50_ms)} / {ms(row.p99_ms)}",
                row.replaced or "no stream hop: the local figure stands",
            )
        )
    return [*lines, ""]


def _hot_channel_lines(results: Mapping[str, Any]) -> list[str]:
    hot = results["hot_channel"]
    when = hot.get("date", results["meta"]["date"])
    separately = (
        f" This table was measured on {when}, in a run of this part alone on the same "
        "machine; the rest of the page comes from the run above."
        if when != results["meta"]["date"]
        else ""
    )
    lines = [
        "## A hot channel: racing publishers",
        "",
        f"N publishers, each with its own connection, publish {hot['publishes_each']} events "
        "each to one channel through the polling API, all released at once, each "
        "publishing again as soon as its reply comes (`bench.hot_channel`). A publish is "
        "one attempt here: a refusal the reference client would retry is a failure. "
        "Afterwards the channel must hold exactly seqs 1..N with the acknowledged data."
        + separately,
        "",
        *table_header("publishers", "publishes/s", "p50", "p99", "failures", "acknowledged"),
    ]
    for row in hot["rows"]:
        lines.append(
            table_row(
                str(row["publishers"]),
                f"{row['publishes_per_second']:.1f}",
                ms(row["p50_ms"]),
                ms(row["p99_ms"]),
                str(row["failures"]),
                f"{row['ok']} of {row['publishes']}",
            )
        )
    return [
        *lines,
        "",
        "A publish takes its seq from a counter on the channel's head item (one "
        "`UpdateItem ADD`, which DynamoDB applies one after another without conflicts), "
        "then writes the event with a conditional put (`eventlog.log`). Every racer "
        "succeeds at its first attempt, so throughput grows with publishers until the "
        "server is busy; locally that is the two processes that run moto and every "
        "other server (two cores here), on AWS a partition's 1,000 write units a second, "
        "about 500 publishes a second per channel.",
        "",
    ]


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
    why = why_missed(results)
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
        *table_header(
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
            f"| {TRANSPORT_LABELS[name]} | {ms(row['p50_ms'])} | {ms(row['p95_ms'])} | "
            f"{ms(row['p99_ms'])} | {ms(row['mean_ms'])} | {ms(row['publish_ack_p50_ms'])} "
            f"| {ms(row['after_ack_p50_ms'])} | {row['samples']} |"
        )
    lines += [
        "",
        "- **Polling** (long poll, `wait=20`): the waiting request re-reads the log after "
        "0.1, 0.2, 0.4 s and then every 0.5 s, so an event waits up to one pause.",
        "- **SSE**: publish, then the DynamoDB stream (the same local poller), then the "
        "broker relay's publish and the task's push to its streams; the log is read only "
        "to catch up. With the broker off, one reader per channel per process polls the "
        f"log every {SSE_READER_INTERVAL_SECONDS * 1000:.0f} ms and an event waits half of "
        "that on average.",
        "- **WebSocket**: publish, then the DynamoDB stream (polled every "
        f"{POLL_INTERVAL_SECONDS * 1000:.0f} ms by the local stack's event source mapping), "
        "then the fan-out function's posts.",
        "",
        *_aws_estimate_lines(results),
        "## On the wire",
        "",
        "![wire](charts/wire.png)",
        "",
        "Counted by the reference client (`client.stats`): HTTP/1.1 request lines, headers "
        "and bodies; WebSocket frame payloads; no TLS or TCP overhead.",
        "",
        *table_header(
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
        *table_header(
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
            f"| {idle_label(key, row)} | {row['requests_per_minute']:.1f} | "
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
        *_hot_channel_lines(results),
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
        *table_header(
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
            f"{row['kb_per_stream']:.1f} | {row['rss_mb']:.0f} | {ms(row['publish_to_first_ms'])} "
            f"| {ms(row['publish_to_all_ms'])} | {ms(row['fanout_ms'])} | "
            f"{ms(row['fanout_max_ms'])} |"
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
        *table_header(
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
            f"| {row['n']:,} | {ms(row['sequential_ms'])} | {ms(row['concurrent_ms'])} | "
            f"{ms(row['many_workers_ms'])} | {row['sequential_over_concurrent']:.1f}x | "
            f"{ms(row['first_ms'])} | {row['function_cpu_ms_per_post']:.2f} ms | "
            f"{row['gateway_cpu_ms_per_post']:.2f} ms | {row['open_seconds']:.1f} s |"
        )
    lines += [
        "",
        f"Against a stub of the @connections API that answers each post after "
        f"{stub['delay_ms']:g} ms, like a network round trip (`bench/websocket_fanout.py`, "
        f"the real `Fanout` and @connections client, {stub['connections']:,} connections): "
        f"{ms(stub['sequential_ms'])} sequential, {ms(stub['concurrent_ms'])} with "
        f"{ws['default_workers']} workers, {ms(stub['many_workers_ms'])} with 64: "
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
        "the runtime's boto3 is. The ratio is taken on the one that matches the assets "
        "(below): compiled when they ship bytecode. The targets: "
        + ", ".join(f"`{key}` {limit:g}x" for key, limit in footprint.IMPORT_RATIO_LIMITS.items())
        + " a bare `import boto3`. The WebSocket handlers import no framework; the polling "
        "function imports FastAPI and pydantic, and leaves PyJWT and boto3 to the first "
        "request that needs them (or, with SnapStart, to the snapshot).",
        "",
        *table_header("module", "compiled", "from source", "/ bare `import boto3` (as shipped)"),
    ]
    for key, row in cold.items():
        ratio = "1.00 (the reference)" if key == "boto3" else f"{row['ratio_to_boto3']:.2f}"
        lines.append(
            f"| `{key}` | {ms(row['compiled_ms'])} | {ms(row['from_source_ms'])} | {ratio} |"
        )
    lines += ["", *table_header("Lambda asset", "zip", "unpacked", "bytecode files")]
    for key, row in assets.items():
        lines.append(
            f"| {key} | {row['zip_kb']:,.0f} KB | {row['unpacked_kb']:,.0f} KB | "
            f"{row['pyc_files']:,.0f} |"
        )
    compiled = footprint.ships_bytecode(assets)
    lines += [
        "",
        "Assets are bundled by `infra.lambda_code.bundle` (what `cdk synth` runs) for "
        "arm64 / Python 3.12. "
        + (
            "They ship bytecode compiled for Python 3.12, so a cold start does not compile "
            "(the *compiled* column is the one the ratios use). "
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
        table_row(
            f"SSE: server memory per open stream (at {max(r['n'] for r in sse_rows):,} streams)",
            f"{memory['sse_kb_per_stream']:.1f} KB",
        ),
        table_row(
            "SSE: streams per task (the service's cap, `SSE_MAX_STREAMS`)",
            f"{memory['sse_streams_per_task']:,}",
        ),
        table_row(
            "WebSocket: local gateway memory per connection (it stands in for API Gateway, "
            "which holds the sockets on AWS and bills connection-minutes instead)",
            f"{memory['websocket_gateway_kb_per_connection']:.1f} KB",
        ),
        table_row(
            "WebSocket: DynamoDB items per subscribed connection",
            f"{memory['websocket_items_per_connection']:.0f}",
        ),
        table_row(
            "WebSocket: their size as DynamoDB bills capacity",
            f"{memory['websocket_item_bytes_per_connection']:.0f} bytes",
        ),
        table_row(
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
