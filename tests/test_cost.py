"""The AWS cost model: hand-computed cases, monotonicity, and a complete price file."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stdout
from dataclasses import replace
from typing import Any

import pytest

from bench import cost, readme

PRICES = cost.load_prices()
MINUTES = cost.HOURS_PER_MONTH * 60  # 43,800


def costs(backplane: str = "broker", **load: Any) -> dict[str, cost.Breakdown]:
    deployment = replace(cost.Deployment(), sse_backplane=backplane)
    return cost.monthly_costs(cost.Load(**load), prices=PRICES, deployment=deployment)


# --- the price file -------------------------------------------------------------------------


def test_every_price_the_model_uses_is_in_the_file() -> None:
    assert set(cost.REQUIRED_PRICES) <= set(PRICES["prices"])


@pytest.mark.parametrize("name", sorted(PRICES["prices"]))
def test_every_price_has_a_source_a_date_and_a_region(name: str) -> None:
    entry = PRICES["prices"][name]
    assert isinstance(entry["price"], float | int)
    assert entry["price"] > 0
    assert entry["unit"]
    assert entry["region"] == PRICES["region"] == "us-east-1"
    assert "2026" in entry["date"]
    assert entry["source"].startswith("https://")


def test_load_balancer_capacity_units_are_defined_with_their_source() -> None:
    dims = PRICES["lcu_dimensions"]
    assert dims["new_connections_per_second"] == 25
    assert dims["active_connections_per_minute"] == 3000
    assert dims["processed_gb_per_hour"] == 1
    assert dims["source"].startswith("https://")


# --- hand-computed cases --------------------------------------------------------------------


def test_websocket_idle_connections_pay_minutes_and_keepalive_messages() -> None:
    ws = costs(clients=1000, events_per_minute=0)["websocket"]
    # 1,000 connections x 43,800 minutes x $0.25 per million
    assert ws["connection minutes"] == pytest.approx(1000 * 43_800 * 0.25e-6)  # $10.95
    # a ping in and a pong out per minute: 2 x 43.8 million messages at $1 per million
    assert ws["keep-alive messages (ping + pong)"] == pytest.approx(87.60)
    assert ws["event messages"] == 0


def test_websocket_pays_one_message_per_event_per_client() -> None:
    ws = costs(clients=100, events_per_minute=10)["websocket"]
    assert ws["event messages"] == pytest.approx(100 * 10 * 43_800 * 1e-6)  # $43.80


def test_short_polling_pays_every_read() -> None:
    polling = costs(clients=100, events_per_minute=0, poll_interval_seconds=5)["polling_short"]
    reads = 100 * 12 * MINUTES  # 52.56 million
    assert polling["API requests"] == pytest.approx(reads * 1e-6)  # $52.56
    assert polling["Lambda requests"] == pytest.approx(reads * 0.2e-6)  # $10.51
    assert polling["log reads (DynamoDB)"] == pytest.approx(reads * 0.125e-6)  # $6.57


def test_a_long_poll_bills_its_whole_wait() -> None:
    polling = costs(clients=1, events_per_minute=0)["polling_long"]
    # 43,800 minutes x 60 s x 0.25 GB x $0.0000133334 per GB-second
    assert polling["Lambda duration (waiting)"] == pytest.approx(8.76, abs=0.01)
    assert polling["API requests"] == pytest.approx(3 * MINUTES * 1e-6)  # one per 20 s wait


def test_a_long_poll_rereads_on_the_pause_schedule() -> None:
    # pauses 0.1, 0.2, 0.4, then 0.5 s: 0.7 s, then 38.6 pauses of 0.5 s (39 reads)
    assert cost.long_poll_reads(20) == 1 + 3 + 39
    assert cost.long_poll_reads(0.1) == 2


def test_polling_snapstart_adds_its_cache_and_a_restore_per_environment() -> None:
    load = cost.Load(clients=1000, events_per_minute=6)
    snapstart = replace(cost.Deployment(), polling_snapstart=True)
    plain = cost.monthly_costs(load, prices=PRICES, deployment=cost.Deployment())
    priced = cost.monthly_costs(load, prices=PRICES, deployment=snapstart)

    # 256 MB cached all month: 0.25 GB x 2,628,000 s x $0.0000015046
    cache = 0.25 * 730 * 3600 * 1.5046e-6  # $0.99
    # Short polling: 1,000 clients x 12 reads a minute x 20 ms keep 4 executions busy,
    # each replaced every 2 h: 1,460 restores of 0.25 GB at $0.0001397998 per GB.
    short = priced["polling_short"]
    assert short["SnapStart cache"] == pytest.approx(cache)
    assert short["SnapStart restores"] == pytest.approx(4 * 365 * 0.25 * 1.397998e-4)
    # Long polling keeps one execution per client: 1,000 x 365 restores.
    assert priced["polling_long"]["SnapStart restores"] == pytest.approx(
        1000 * 365 * 0.25 * 1.397998e-4
    )
    for name in ("polling_short", "polling_long"):
        added = {item: priced[name][item] for item in set(priced[name]) - set(plain[name])}
        assert set(added) == {"SnapStart cache", "SnapStart restores"}
        assert {item: priced[name][item] for item in plain[name]} == plain[name]
    for name in ("websocket", "sse"):
        assert priced[name] == plain[name]


def test_the_command_line_prices_polling_with_snapstart() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cost.main(["--clients", "10", "--polling-snapstart"]) == 0
    assert "SnapStart cache" in out.getvalue()


def test_sse_has_a_floor_of_two_tasks_a_load_balancer_and_a_broker() -> None:
    sse = costs(clients=0, events_per_minute=0)["sse"]
    assert sse["Fargate vCPU"] == pytest.approx(2 * 730 * 0.03238)  # $47.27
    assert sse["Fargate memory"] == pytest.approx(2 * 2 * 730 * 0.00356)  # $10.40
    assert sse["public IPv4 per task"] == pytest.approx(2 * 730 * 0.005)  # $7.30
    assert sse["ALB hours"] == pytest.approx(730 * 0.0225)  # $16.43
    # ElastiCache Serverless for Valkey meters at least 100 MB: 0.1 x 730 h x $0.084
    assert sse["broker storage floor (ElastiCache)"] == pytest.approx(6.13, abs=0.01)
    assert "shared reader reads (DynamoDB)" not in sse  # nothing polls the log
    assert sum(sse.values()) == pytest.approx(87.53, abs=0.01)


def test_without_the_broker_each_task_polls_each_channel() -> None:
    sse = costs(clients=0, events_per_minute=0, backplane="log")["sse"]
    # each task reads the channel every 0.25 s: 2 x 10.512 million reads
    assert sse["shared reader reads (DynamoDB)"] == pytest.approx(2 * MINUTES * 240 * 0.125e-6)
    assert "broker ECPUs (ElastiCache)" not in sse
    few = costs(clients=100, events_per_minute=6, backplane="log")["sse"]
    many = costs(clients=5000, events_per_minute=6, backplane="log")["sse"]
    assert few["shared reader reads (DynamoDB)"] == many["shared reader reads (DynamoDB)"]


def test_the_broker_bills_each_event_once_and_once_per_task_that_has_its_channel() -> None:
    # 1,000 clients on one channel: both tasks have it; 43,800 events a month
    sse = costs(clients=1000, events_per_minute=1)["sse"]
    assert sse["broker ECPUs (ElastiCache)"] == pytest.approx(43_800 * (1 + 2) * 2.3e-9)
    assert sse["broker relay Lambda"] == pytest.approx(
        43_800 * (0.2e-6 + 0.25 * 0.010 * 0.0000133334)
    )


def test_many_channels_cost_sse_no_more_than_websocket_with_the_broker() -> None:
    """The load that made the per-channel readers cost $1.3M a month."""
    load: dict[str, Any] = {"clients": 1_000_000, "channels": 100_000, "events_per_minute": 1}
    with_broker = cost.totals(costs(**load))
    assert with_broker["sse"] <= with_broker["websocket"]
    polling_the_log = cost.totals(costs(backplane="log", **load))
    assert polling_the_log["sse"] > 5 * polling_the_log["websocket"]


def test_sse_tasks_are_sized_by_cpu_when_events_are_frequent() -> None:
    deployment = replace(cost.Deployment(), sse_cpu_ms_per_stream_event=0.11)
    load = cost.Load(clients=100_000, events_per_minute=60)
    # 60 events x 0.11 ms per stream = 6.6 ms a minute per stream; 60% of 60 s of one vCPU
    assert cost.sse_streams_per_task(load, deployment) == 5454
    assert cost.sse_tasks(load, deployment) == math.ceil(100_000 / 5454)


def test_publishes_cost_the_logs_two_writes() -> None:
    for breakdown in costs(clients=0, events_per_minute=1).values():
        # 43,800 events x 2 write units (the head counter, the event) x $0.625 per million
        assert breakdown["publish writes (DynamoDB)"] == pytest.approx(43_800 * 2 * 0.625e-6)


# --- shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", cost.TRANSPORTS)
def test_cost_never_falls_as_clients_grow(transport: str) -> None:
    for rate in (0, 1, 60):
        totals = [
            cost.totals(costs(clients=clients, events_per_minute=rate))[transport]
            for clients in (0, 10, 100, 1_000, 10_000, 100_000)
        ]
        assert totals == sorted(totals), (rate, totals)


@pytest.mark.parametrize("transport", cost.TRANSPORTS)
def test_cost_never_falls_as_events_or_hours_grow(transport: str) -> None:
    by_rate = [
        cost.totals(costs(clients=1000, events_per_minute=rate))[transport]
        for rate in (0, 1, 10, 60, 600)
    ]
    assert by_rate == sorted(by_rate)
    by_hours = [
        cost.totals(costs(clients=1000, events_per_minute=6, hours=hours))[transport]
        for hours in (1, 24, 730)
    ]
    assert by_hours == sorted(by_hours)


def test_the_cheapest_transport_changes_with_the_load() -> None:
    assert cost.cheapest(costs(clients=10, events_per_minute=1)) == "websocket"
    assert cost.cheapest(costs(clients=100_000, events_per_minute=60)) == "sse"


def test_measured_figures_replace_the_defaults() -> None:
    results = {
        "wire": {
            "per_event": {
                name: {"subscriber_bytes_received": 100.0, "subscriber_bytes_sent": 20.0}
                for name in ("polling", "sse", "websocket")
            },
            "idle": {
                "polling_short": {"bytes_per_cycle": 600.0},
                "sse": {"bytes_per_cycle": 13.0},
                "websocket": {"bytes_per_cycle": 32.0},
            },
        },
        "fanout": {
            "sse": {"rows": [{"n": 10_000, "fanout_ms": 500.0}, {"n": 100, "fanout_ms": 9.0}]},
            "websocket": {"rows": [{"n": 1000, "function_cpu_ms_per_post": 1.5}]},
        },
        "memory": {
            "sse_kb_per_stream": 40.0,
            "websocket_items_per_connection": 2.0,
            "websocket_item_bytes_per_connection": 200.0,
        },
    }
    measured = cost.Deployment.measured(results)
    assert measured.sse_cpu_ms_per_stream_event == pytest.approx(0.05)  # 500 ms / 10,000
    assert measured.fanout_cpu_ms_per_post == 1.5
    assert measured.subscription_item_bytes == 100.0
    assert measured.sse_kb_per_stream == 40.0
    assert measured.sse_event_bytes == 120.0


def test_the_command_line_prints_every_transport_and_the_cheapest() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cost.main(["--clients", "500", "--events-per-minute", "2", "--hours", "24"]) == 0
    text = out.getvalue()
    for name in cost.TRANSPORTS:
        assert name in text
    assert "cheapest:" in text
    assert "500 clients" in text


def test_the_command_line_refuses_an_impossible_load() -> None:
    with pytest.raises(SystemExit):
        cost.main(["--clients", "-1"])


def test_the_readme_states_where_each_transport_wins_as_the_model_does() -> None:
    assert "cost" in readme.BLOCKS
    measured = cost.deployment_from_results()
    assert measured != cost.Deployment()  # the committed results, not the defaults
    assert readme.BLOCKS["cost"]() == cost.sweep_table(PRICES, measured)
    assert "cost" not in readme.stale(readme.README.read_text()), "run: make readme"
