"""The README's comparison table, from ``results.json`` (``bench.readme`` puts it there)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench import aws_estimate, cost
from bench.labels import table_header, table_row
from eventlog.config import SSE_READER_INTERVAL_SECONDS


def _route_functions() -> int:
    # One function per route (infra/websocket_api.py); imported here, where all three
    # transports are present, so that a checkout without WebSocket can import this module.
    from websocket_api.routes import ROUTES

    return len(ROUTES)


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

    expected = aws_estimate.estimates(results)

    def on_aws(name: str) -> str:
        row = expected[name]
        return f"AWS about p50 {row.p50_ms:.0f} ms, p99 {row.p99_ms:.0f} ms"

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
            "server to client only; publish is a `POST` to the same service",
            "both ways on one socket (`subscribe`, `publish`, `ping` frames)",
        ),
        (
            "Latency, publish to deliver (local; expected on AWS, an estimate)",
            f"{latency('polling')}; {on_aws('polling')}: a waiting request re-reads the log "
            "every 0.1-0.5 s",
            f"{latency('sse')}; {on_aws('sse')}: the stream, a relay to the broker, a push "
            f"to the task (without the broker, a reader per channel polls every "
            f"{SSE_READER_INTERVAL_SECONDS * 1000:.0f} ms)",
            f"{latency('websocket')}; {on_aws('websocket')}: the stream, the fan-out's "
            "posts (the AWS estimate swaps the local stream poller for a measured "
            "DynamoDB stream hop: docs/TRADEOFFS.md)",
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
            f"{code['websocket']['python_lines']:,} lines; {_route_functions()} route "
            "functions, an authorizer, a fan-out function, a connections table",
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
            "`Last-Event-ID`); one broker subscription per channel per task",
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
            f"{cold['polling_handler']['as_shipped_ms']:.0f} ms (FastAPI + Mangum), "
            f"{cold['polling_handler']['ratio_to_boto3']:.1f}x `import boto3`",
            "none: a long-running task",
            f"{cold['websocket_routes']['as_shipped_ms']:.0f} ms per route, "
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
            "clients that cannot hold a connection; never the cheapest (see below)",
            "one-way feeds to many clients (from about a thousand), at any event rate "
            "and on any number of channels (dashboards, notifications)",
            "two-way interaction (chat, presence, collaborative editing), or fewer "
            "than about a thousand clients",
        ),
    ]
    lines = [
        f"Measured on one machine in one run ({results['meta']['date'][:10]}, local stack: "
        "relative, not absolute, numbers); limits from the AWS documentation "
        "([docs/TRADEOFFS.md](docs/TRADEOFFS.md) has the method, every figure and the "
        "charts; `make cost` prices any other load).",
        "",
        *table_header("", "Polling", "SSE", "WebSocket"),
        *(table_row(f"**{name}**", *cells) for name, *cells in rows),
    ]
    return "\n".join(lines)
