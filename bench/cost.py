"""What each transport costs a month on AWS for a given load, from one price file.

::

    python -m bench.cost --clients 10000 --events-per-minute 6 --poll-interval 5 --hours 730

Prices come from ``bench/prices.json`` (region, date and source for each); the
transport's own behaviour comes from the project's constants (intervals, memory
sizes, batch sizes) and, where it was measured, from ``bench/results.json`` (bytes
per event and per idle cycle, fan-out CPU per post, memory per SSE stream). The
load: ``clients`` subscribers of one channel (``--channels`` spreads the same
clients and events over more), ``events_per_minute`` published to each channel,
for ``hours`` a month.

How each transport spends:

- **polling, short** (one read every ``poll_interval`` s): every read is an HTTP API
  request, a Lambda invocation of a few tens of ms, and a strongly consistent Query
  (1 read unit). Cost grows with clients x reads, whether events come or not.
- **polling, long** (``wait`` = 20 s): one request per wait window, or per event when
  events come faster; the function is billed for the whole wait, and re-reads the
  log while it waits (``polling.long_poll``'s pause schedule): a client keeps a
  Lambda busy around the clock.
- **polling with SnapStart** (``--polling-snapstart``, ``-c pollingSnapStart=on``), either
  kind: the published version's snapshot cached all month, per GB of the function's
  memory, and a restore, per GB, for every execution environment Lambda starts: the
  executions the load keeps busy on average, each replaced every
  ``lambda_environment_hours``.
- **WebSocket**: connection-minutes, and messages both ways in 32 KB increments:
  each event to each client, the keep-alive ping and pong, the subscribe after every
  reconnect (API Gateway closes a connection after 2 h); the fan-out Lambda (one
  invocation per event, its duration from the measured CPU per post or the network
  wait shared by its threads, whichever is longer) and its Query of the channel's
  subscribers; the route Lambdas; the connections table's writes.
- **SSE**: Fargate tasks, as many as the streams need (streams per task bounded by
  the service's cap, by memory at the measured KB per stream and by CPU at the
  measured fan-out cost per stream and event), each with a public IPv4 address;
  the ALB's hours and LCUs (active connections, new connections, processed bytes);
  a backlog read of the log per reconnect (streams end within
  ``SSE_MAX_STREAM_SECONDS``); and how events reach the tasks. With the broker (the
  default, ``--backplane broker``): ElastiCache Serverless for Valkey (its 100 MB
  storage floor, and one ECPU per KB for each publish and each delivery to a task
  that has the channel) and the relay Lambda, one invocation per event. With
  ``--backplane log``: the shared readers' Queries, one per reader interval per
  channel per task, **whether or not anything is published**.

Every transport pays the publishes (an HTTP API request or a WebSocket message, a
Lambda invocation, the log's two writes) and data transfer out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from client.config import DEFAULT_WAIT_SECONDS, WEBSOCKET_KEEPALIVE_SECONDS
from eventlog.config import (
    DEFAULT_FANOUT_WORKERS,
    LONG_POLL_FIRST_INTERVAL_SECONDS,
    LONG_POLL_MAX_INTERVAL_SECONDS,
    PUBLISH_WRITE_UNITS,
    SSE_HEARTBEAT_SECONDS,
    SSE_MAX_STREAM_SECONDS,
    SSE_MAX_STREAMS,
    SSE_READER_INTERVAL_SECONDS,
    WEBSOCKET_MAX_CONNECTION_SECONDS,
    WEBSOCKET_MAX_FRAME_BYTES,
)

HERE = Path(__file__).resolve().parent
PRICES_FILE = HERE / "prices.json"
RESULTS_FILE = HERE / "results.json"

HOURS_PER_MONTH = 730.0
TRANSPORTS = ("polling_short", "polling_long", "websocket", "sse")
REQUIRED_PRICES = (
    "apigw_http_request",
    "apigw_websocket_message",
    "apigw_websocket_connection_minute",
    "lambda_request",
    "lambda_gb_second_arm64",
    "lambda_snapstart_cache_gb_second",
    "lambda_snapstart_restore_gb",
    "dynamodb_read_request_unit",
    "dynamodb_write_request_unit",
    "dynamodb_streams_read_request_unit",
    "fargate_vcpu_hour_arm64",
    "fargate_gb_hour_arm64",
    "alb_hour",
    "alb_lcu_hour",
    "data_transfer_out_gb",
    "public_ipv4_hour",
)


@dataclass(frozen=True, kw_only=True)
class Load:
    clients: int
    events_per_minute: float
    """Events published to each channel per minute."""
    poll_interval_seconds: float = 5.0
    """Short polling: seconds between two reads."""
    hours: float = HOURS_PER_MONTH
    channels: int = 1
    """The clients are spread evenly over this many channels, each with its own events."""

    def __post_init__(self) -> None:
        if self.clients < 0 or self.events_per_minute < 0 or self.channels < 1:
            raise ValueError("clients and events must not be negative; channels at least 1")
        if self.poll_interval_seconds <= 0 or self.hours <= 0:
            raise ValueError("poll_interval_seconds and hours must be positive")


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """How the stacks are sized (the infra/ defaults) and what each transport costs per unit.

    The ``*_bytes`` and ``*_per_*`` fields are measured by the benchmark and read from
    ``results.json`` by ``Deployment.measured``; the defaults are those of the full run of
    2026-12-03 on the development machine (rounded), so the model works without one.
    """

    polling_memory_gb: float = 0.25  # infra/polling_api.py memory_size default, 256 MB
    polling_read_ms: float = 20.0  # billed time of a read that does not wait (assumed)
    long_poll_wait_seconds: float = DEFAULT_WAIT_SECONDS
    polling_snapstart: bool = False  # infra/polling_api.py: -c pollingSnapStart=on
    lambda_environment_hours: float = 2.0
    """How long an execution environment lives before Lambda replaces it (assumed: Lambda
    publishes no figure). With SnapStart every replacement is one more restore."""
    route_memory_gb: float = 0.25  # infra/websocket_api.py route functions, 256 MB
    route_ms: float = 20.0  # billed time of one route invocation (assumed)
    publish_ms: float = 30.0  # billed time of a publish (the counter and the put, assumed)
    fanout_memory_gb: float = 1769 / 1024  # infra/websocket_api.py: one full vCPU
    fanout_workers: int = DEFAULT_FANOUT_WORKERS
    post_round_trip_ms: float = 10.0  # post_to_connection from Lambda (assumed: 5-20 ms)
    fanout_cpu_ms_per_post: float = 0.36  # measured: results fanout.websocket
    websocket_keepalive_seconds: float = WEBSOCKET_KEEPALIVE_SECONDS
    websocket_connection_minutes: float = WEBSOCKET_MAX_CONNECTION_SECONDS / 60
    """How long a connection lasts before the client reconnects (API Gateway's 2 h cap)."""
    subscription_item_bytes: float = 110.0  # measured: memory.websocket_item_bytes / 2
    sse_task_vcpu: float = 1.0  # infra/sse_service.py cpu=1024
    sse_task_gb: float = 2.0  # infra/sse_service.py memory_mib=2048
    sse_min_tasks: int = 2  # infra/sse_service.py desired_count: a task to fail over to
    sse_streams_cap: int = SSE_MAX_STREAMS
    sse_kb_per_stream: float = 17.3  # measured: memory.sse_kb_per_stream
    sse_memory_usable_fraction: float = 0.7  # of the task's memory, for streams
    sse_cpu_ms_per_stream_event: float = 0.023  # measured: fanout.sse fan-out / N
    sse_cpu_target: float = 0.6  # infra/sse_service.py CPU_TARGET_PERCENT
    sse_reader_interval_seconds: float = SSE_READER_INTERVAL_SECONDS
    sse_heartbeat_seconds: float = SSE_HEARTBEAT_SECONDS
    sse_stream_minutes: float = min(60.0, 0.75 * SSE_MAX_STREAM_SECONDS / 60)
    """Average life of a stream before its client reconnects: the server ends each one at a
    random moment between half of SSE_MAX_STREAM_SECONDS and all of it, if the client
    (a closed tab, a deploy) has not ended it first."""
    sse_backplane: str = "broker"
    """How events reach the tasks: "broker" (infra/sse_broker.py) or "log" (each polls)."""
    broker_min_gb: float = 0.1  # ElastiCache Serverless for Valkey meters at least 100 MB
    relay_memory_gb: float = 0.25  # infra/sse_broker.py memory_size=256
    relay_ms: float = 10.0  # billed time of one relay invocation, one PUBLISH (assumed)
    poll_request_bytes: float = 658.0  # measured: bytes of one empty poll, both ways
    poll_event_bytes: float = 867.0  # measured: bytes per event for a polling client
    sse_event_bytes: float = 99.0  # measured: SSE bytes per event
    sse_heartbeat_bytes: float = 13.0  # measured: one heartbeat
    websocket_event_bytes: float = 115.0  # measured: WebSocket bytes per event
    websocket_ping_bytes: float = 32.0  # measured: a ping and its pong
    stream_open_bytes: float = 500.0  # an SSE request and response head (approximate)

    @classmethod
    def measured(cls, results: Mapping[str, Any]) -> Deployment:
        """The defaults, with every figure the benchmark measured taken from its results."""
        per_event = results["wire"]["per_event"]
        idle = results["wire"]["idle"]
        sse_rows = results["fanout"]["sse"]["rows"]
        largest = max(sse_rows, key=lambda row: row["n"])
        ws_rows = results["fanout"]["websocket"]["rows"]
        largest_ws = max(ws_rows, key=lambda row: row["n"])
        memory = results["memory"]

        def received_and_sent(transport: str) -> float:
            row = per_event[transport]
            return float(row["subscriber_bytes_received"] + row["subscriber_bytes_sent"])

        return replace(
            cls(),
            fanout_cpu_ms_per_post=largest_ws["function_cpu_ms_per_post"],
            subscription_item_bytes=memory["websocket_item_bytes_per_connection"]
            / max(memory["websocket_items_per_connection"], 1),
            sse_kb_per_stream=memory["sse_kb_per_stream"],
            sse_cpu_ms_per_stream_event=max(largest["fanout_ms"], 0.0) / largest["n"],
            poll_request_bytes=idle["polling_short"]["bytes_per_cycle"],
            poll_event_bytes=received_and_sent("polling"),
            sse_event_bytes=received_and_sent("sse"),
            sse_heartbeat_bytes=idle["sse"]["bytes_per_cycle"],
            websocket_event_bytes=received_and_sent("websocket"),
            websocket_ping_bytes=idle["websocket"]["bytes_per_cycle"],
        )


Breakdown = dict[str, float]
"""Line item -> dollars for the period."""


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _price(prices: Mapping[str, Any], name: str) -> float:
    return float(prices["prices"][name]["price"])


def long_poll_reads(wait_seconds: float) -> int:
    """Reads one empty long poll of ``wait_seconds`` makes (``polling.long_poll``'s schedule)."""
    reads, elapsed, pause = 1, 0.0, LONG_POLL_FIRST_INTERVAL_SECONDS
    while elapsed + 1e-9 < wait_seconds:
        elapsed += min(pause, wait_seconds - elapsed)
        reads += 1
        pause = min(pause * 2, LONG_POLL_MAX_INTERVAL_SECONDS)
    return reads


def _gb_out(prices: Mapping[str, Any], total_bytes: float) -> float:
    return total_bytes / 1e9 * _price(prices, "data_transfer_out_gb")


def _publishes(
    load: Load, prices: Mapping[str, Any], d: Deployment, *, over_websocket: bool
) -> Breakdown:
    """Publishing the events: the request, the Lambda, the log's counter and put."""
    events = load.events_per_minute * load.channels * load.hours * 60
    lambda_cost = _price(prices, "lambda_request") + d.route_memory_gb * d.publish_ms / 1000 * (
        _price(prices, "lambda_gb_second_arm64")
    )
    if over_websocket:  # the publish frame in, the ``published`` acknowledgement out
        request = 2 * _price(prices, "apigw_websocket_message")
    else:
        request = _price(prices, "apigw_http_request")
    return {
        "publish requests": events * request,
        "publish Lambda": events * lambda_cost,
        "publish writes (DynamoDB)": events
        * PUBLISH_WRITE_UNITS
        * _price(prices, "dynamodb_write_request_unit"),
    }


def _polling_snapstart(
    load: Load, prices: Mapping[str, Any], d: Deployment, *, busy_seconds: float
) -> Breakdown:
    """SnapStart's charges: the one published version's cache, and a restore per environment."""
    if not d.polling_snapstart:
        return {}
    seconds = load.hours * 3600
    environments = max(1.0, busy_seconds / seconds)  # executions at once, on average
    restores = environments * load.hours / d.lambda_environment_hours
    return {
        "SnapStart cache": d.polling_memory_gb
        * seconds
        * _price(prices, "lambda_snapstart_cache_gb_second"),
        "SnapStart restores": restores
        * d.polling_memory_gb
        * _price(prices, "lambda_snapstart_restore_gb"),
    }


def polling_short(load: Load, prices: Mapping[str, Any], d: Deployment) -> Breakdown:
    minutes = load.hours * 60
    reads = load.clients * 60 / load.poll_interval_seconds * minutes
    events_seen = load.clients * load.events_per_minute * minutes
    busy_seconds = reads * d.polling_read_ms / 1000
    return {
        "API requests": reads * _price(prices, "apigw_http_request"),
        "Lambda requests": reads * _price(prices, "lambda_request"),
        "Lambda duration": busy_seconds
        * d.polling_memory_gb
        * _price(prices, "lambda_gb_second_arm64"),
        **_polling_snapstart(load, prices, d, busy_seconds=busy_seconds),
        "log reads (DynamoDB)": reads * _price(prices, "dynamodb_read_request_unit"),
        # An event rides in a read's reply: it adds about its own size (its SSE frame's).
        "data transfer out": _gb_out(
            prices, reads * d.poll_request_bytes + events_seen * d.sse_event_bytes
        ),
        **_publishes(load, prices, d, over_websocket=False),
    }


def polling_long(load: Load, prices: Mapping[str, Any], d: Deployment) -> Breakdown:
    minutes = load.hours * 60
    wait = d.long_poll_wait_seconds
    # One request per wait window while idle; an event ends a wait early and the client
    # asks again at once, so each event adds about one request (an upper bound).
    requests_per_minute = 60 / wait + load.events_per_minute
    requests = load.clients * requests_per_minute * minutes
    # The function runs for the whole wait: a waiting client keeps one Lambda busy.
    busy_seconds = load.clients * minutes * 60
    reads_per_second = long_poll_reads(wait) / wait
    reads = load.clients * minutes * 60 * reads_per_second + requests
    events_seen = load.clients * load.events_per_minute * minutes
    return {
        "API requests": requests * _price(prices, "apigw_http_request"),
        "Lambda requests": requests * _price(prices, "lambda_request"),
        "Lambda duration (waiting)": busy_seconds
        * d.polling_memory_gb
        * _price(prices, "lambda_gb_second_arm64"),
        "log reads while waiting (DynamoDB)": reads * _price(prices, "dynamodb_read_request_unit"),
        **_polling_snapstart(load, prices, d, busy_seconds=busy_seconds),
        "data transfer out": _gb_out(
            prices,
            load.clients * 60 / wait * minutes * d.poll_request_bytes
            + events_seen * d.poll_event_bytes,
        ),
        **_publishes(load, prices, d, over_websocket=False),
    }


def websocket(load: Load, prices: Mapping[str, Any], d: Deployment) -> Breakdown:
    minutes = load.hours * 60
    message = _price(prices, "apigw_websocket_message")
    gb_second = _price(prices, "lambda_gb_second_arm64")
    invoke = _price(prices, "lambda_request")
    route_invocation = invoke + d.route_memory_gb * d.route_ms / 1000 * gb_second
    per_channel = load.clients / load.channels
    events = load.events_per_minute * load.channels * minutes
    frames_per_event = math.ceil(
        max(d.websocket_event_bytes, 1) / WEBSOCKET_MAX_FRAME_BYTES
    )  # 32 KB increments
    deliveries = load.clients * load.events_per_minute * minutes
    pings = load.clients * minutes * 60 / d.websocket_keepalive_seconds
    connections = load.clients * minutes / d.websocket_connection_minutes
    # A fan-out invocation posts to every subscriber: CPU per post, or the round trips
    # shared by its threads, whichever takes longer.
    post_ms = max(d.fanout_cpu_ms_per_post, d.post_round_trip_ms / d.fanout_workers)
    fanout_seconds = events * per_channel * post_ms / 1000
    subscriber_read_units = math.ceil(per_channel * d.subscription_item_bytes / 4096)
    return {
        "connection minutes": load.clients
        * minutes
        * _price(prices, "apigw_websocket_connection_minute"),
        "event messages": deliveries * frames_per_event * message,
        "keep-alive messages (ping + pong)": pings * 2 * message,
        "keep-alive Lambda (ping route)": pings * route_invocation,
        "reconnects ($connect, subscribe, $disconnect)": connections
        * (2 * message + 3 * route_invocation),
        "connections table writes (DynamoDB)": connections
        * 4
        * _price(prices, "dynamodb_write_request_unit"),
        "fan-out Lambda": events * invoke + fanout_seconds * d.fanout_memory_gb * gb_second,
        "fan-out subscriber reads (DynamoDB)": events
        * subscriber_read_units
        * _price(prices, "dynamodb_read_request_unit"),
        "data transfer out": _gb_out(
            prices,
            deliveries * d.websocket_event_bytes + pings * d.websocket_ping_bytes,
        ),
        **_publishes(load, prices, d, over_websocket=True),
    }


def sse_streams_per_task(load: Load, d: Deployment) -> int:
    """Streams one task can hold: the cap, the memory, and the CPU of the broadcasts."""
    by_memory = d.sse_task_gb * 1024 * 1024 * d.sse_memory_usable_fraction / d.sse_kb_per_stream
    busy_ms_per_stream_minute = load.events_per_minute * d.sse_cpu_ms_per_stream_event
    by_cpu = (
        d.sse_task_vcpu * 60_000 * d.sse_cpu_target / busy_ms_per_stream_minute
        if busy_ms_per_stream_minute > 0
        else math.inf
    )
    return max(1, int(min(d.sse_streams_cap, by_memory, by_cpu)))


def sse_tasks(load: Load, d: Deployment) -> int:
    return max(d.sse_min_tasks, math.ceil(load.clients / sse_streams_per_task(load, d)))


def sse(load: Load, prices: Mapping[str, Any], d: Deployment) -> Breakdown:
    hours = load.hours
    minutes = hours * 60
    tasks = sse_tasks(load, d)
    dims = prices["lcu_dimensions"]
    deliveries = load.clients * load.events_per_minute * minutes
    heartbeats = load.clients * minutes * 60 / d.sse_heartbeat_seconds
    opens = load.clients * minutes / d.sse_stream_minutes
    processed_gb_per_hour = (
        (
            (deliveries * d.sse_event_bytes + heartbeats * d.sse_heartbeat_bytes)
            + opens * d.stream_open_bytes
        )
        / 1e9
        / hours
    )
    lcus = max(
        opens / (hours * 3600) / dims["new_connections_per_second"],
        load.clients / dims["active_connections_per_minute"],
        processed_gb_per_hour / dims["processed_gb_per_hour"],
    )
    return {
        **_sse_tasks_and_balancer(load, prices, d, tasks=tasks, lcus=lcus),
        "backlog reads on reconnect (DynamoDB)": opens
        * _price(prices, "dynamodb_read_request_unit"),
        **(_sse_broker(load, prices, d, tasks=tasks) if d.sse_backplane == "broker" else {}),
        **(_sse_log_readers(load, prices, d, tasks=tasks) if d.sse_backplane == "log" else {}),
        "data transfer out": _gb_out(
            prices, deliveries * d.sse_event_bytes + heartbeats * d.sse_heartbeat_bytes
        ),
        **_publishes(load, prices, d, over_websocket=False),
    }


def _sse_tasks_and_balancer(
    load: Load, prices: Mapping[str, Any], d: Deployment, *, tasks: int, lcus: float
) -> Breakdown:
    hours = load.hours
    return {
        "Fargate vCPU": tasks * d.sse_task_vcpu * hours * _price(prices, "fargate_vcpu_hour_arm64"),
        "Fargate memory": tasks * d.sse_task_gb * hours * _price(prices, "fargate_gb_hour_arm64"),
        "public IPv4 per task": tasks * hours * _price(prices, "public_ipv4_hour"),
        "ALB hours": hours * _price(prices, "alb_hour"),
        "ALB LCUs": lcus * hours * _price(prices, "alb_lcu_hour"),
    }


def _channels_per_task(load: Load, tasks: int) -> int:
    """Channels a task has subscribers on: all of them, or one per client it holds."""
    return min(load.channels, max(1, math.ceil(load.clients / tasks)))


def _tasks_per_channel(load: Load, tasks: int) -> float:
    """Tasks that have a given channel: every task, or one per client of the channel."""
    return min(float(tasks), max(1.0, load.clients / load.channels)) if load.clients else 0.0


def _sse_log_readers(
    load: Load, prices: Mapping[str, Any], d: Deployment, *, tasks: int
) -> Breakdown:
    # Each task reads each channel that has subscribers there, once per reader interval.
    reads = (
        tasks * _channels_per_task(load, tasks) * load.hours * 3600 / d.sse_reader_interval_seconds
    )
    return {"shared reader reads (DynamoDB)": reads * _price(prices, "dynamodb_read_request_unit")}


def _sse_broker(load: Load, prices: Mapping[str, Any], d: Deployment, *, tasks: int) -> Breakdown:
    events = load.channels * load.events_per_minute * load.hours * 60
    kb = max(1, math.ceil(d.sse_event_bytes / 1024))
    ecpus = events * kb * (1 + _tasks_per_channel(load, tasks))  # a publish, each delivery
    relay_invocation = _price(prices, "lambda_request") + d.relay_memory_gb * d.relay_ms / 1000 * (
        _price(prices, "lambda_gb_second_arm64")
    )
    return {
        "broker storage floor (ElastiCache)": d.broker_min_gb
        * load.hours
        * _price(prices, "elasticache_valkey_serverless_gb_hour"),
        "broker ECPUs (ElastiCache)": ecpus * _price(prices, "elasticache_valkey_serverless_ecpu"),
        "broker relay Lambda": events * relay_invocation,
    }


MODELS = {
    "polling_short": polling_short,
    "polling_long": polling_long,
    "websocket": websocket,
    "sse": sse,
}


def monthly_costs(
    load: Load, *, prices: Mapping[str, Any] | None = None, deployment: Deployment | None = None
) -> dict[str, Breakdown]:
    """Each transport's line items for ``load``."""
    prices = prices if prices is not None else load_prices()
    deployment = deployment or Deployment()
    return {name: model(load, prices, deployment) for name, model in MODELS.items()}


def totals(costs: Mapping[str, Breakdown]) -> dict[str, float]:
    return {name: sum(items.values()) for name, items in costs.items()}


def cheapest(costs: Mapping[str, Breakdown]) -> str:
    summed = totals(costs)
    return min(summed, key=lambda name: summed[name])


def deployment_from_results(path: Path = RESULTS_FILE) -> Deployment:
    """The measured deployment if a benchmark has run, else the documented defaults."""
    try:
        return Deployment.measured(json.loads(path.read_text()))
    except (FileNotFoundError, KeyError, ValueError):
        return Deployment()


def format_table(load: Load, costs: Mapping[str, Breakdown], deployment: Deployment) -> str:
    lines = [
        f"{load.clients:,} clients on {load.channels} channel(s), "
        f"{load.events_per_minute:g} events/min per channel, {load.hours:g} h "
        f"(short polling every {load.poll_interval_seconds:g} s, long polling "
        f"{deployment.long_poll_wait_seconds:g} s waits; SSE {sse_tasks(load, deployment)} "
        f"task(s) of {sse_streams_per_task(load, deployment):,} streams)",
        "",
    ]
    summed = totals(costs)
    for name in sorted(summed, key=lambda n: summed[n]):
        lines.append(f"{name:15} ${summed[name]:>12,.2f}")
        for item, dollars in sorted(costs[name].items(), key=lambda kv: -kv[1]):
            if dollars >= 0.005:
                lines.append(f"    {item:45} ${dollars:>12,.2f}")
    lines.append("")
    lines.append(f"cheapest: {cheapest(costs)}")
    return "\n".join(lines)


SWEEP: tuple[tuple[int, int, float], ...] = (
    (100, 1, 0.1),
    (100, 1, 6),
    (10_000, 1, 0.1),
    (10_000, 1, 6),
    (10_000, 1_000, 6),
    (100_000, 1_000, 6),
    (1_000_000, 1, 1),
    (1_000_000, 100_000, 1),
    (1_000_000, 100_000, 0.1),
)
"""(clients, channels, events per minute per channel): the loads the README's table prices."""


def sweep_table(
    prices: Mapping[str, Any] | None = None, deployment: Deployment | None = None
) -> str:
    """Where each transport wins: a month of each, for the ``SWEEP`` loads (markdown)."""
    deployment = deployment or Deployment()
    lines = [
        "| clients | channels | events/min per channel | polling every 5 s | long polling "
        "| SSE | WebSocket | cheapest |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for clients, channels, per_minute in SWEEP:
        load = Load(clients=clients, channels=channels, events_per_minute=per_minute)
        summed = totals(monthly_costs(load, prices=prices, deployment=deployment))
        best = min(summed, key=lambda name: summed[name])
        cells = " | ".join(
            f"${summed[name]:,.0f}"
            for name in ("polling_short", "polling_long", "sse", "websocket")
        )
        lines.append(
            f"| {clients:,} | {channels:,} | {per_minute:g} | {cells} | {COST_NAMES[best]} |"
        )
    return "\n".join(lines)


COST_NAMES = {
    "polling_short": "polling",
    "polling_long": "long polling",
    "sse": "SSE",
    "websocket": "WebSocket",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cost", description="Monthly AWS cost of each transport for a load."
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events-per-minute", type=float, default=6.0)
    parser.add_argument("--poll-interval", type=float, default=5.0, help="short polling, s")
    parser.add_argument("--hours", type=float, default=HOURS_PER_MONTH)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument(
        "--backplane",
        choices=("broker", "log"),
        default="broker",
        help="how events reach the SSE tasks (infra/sse_broker.py; -c sseBackplane)",
    )
    parser.add_argument(
        "--polling-snapstart",
        action="store_true",
        help="the polling function with SnapStart (infra/polling_api.py; -c pollingSnapStart=on)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_FILE, help="measured figures")
    parser.add_argument("--prices", type=Path, default=PRICES_FILE)
    parser.add_argument(
        "--sweep", action="store_true", help="the README's table: where each transport wins"
    )
    args = parser.parse_args(argv)
    if args.sweep:
        print(sweep_table(load_prices(args.prices), deployment_from_results(args.results)))
        return 0
    try:
        load = Load(
            clients=args.clients,
            events_per_minute=args.events_per_minute,
            poll_interval_seconds=args.poll_interval,
            hours=args.hours,
            channels=args.channels,
        )
    except ValueError as exc:
        parser.error(str(exc))
    deployment = replace(
        deployment_from_results(args.results),
        sse_backplane=args.backplane,
        polling_snapstart=args.polling_snapstart,
    )
    costs = monthly_costs(load, prices=load_prices(args.prices), deployment=deployment)
    print(format_table(load, costs, deployment))
    return 0


if __name__ == "__main__":
    sys.exit(main())
