"""The charts of docs/TRADEOFFS.md, drawn from ``results.json`` with matplotlib."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import cost, footprint
from bench.labels import (
    COLORS,
    COST_CLIENTS,
    COST_EVENT_RATES,
    COST_LABELS,
    TRANSPORT_LABELS,
    idle_label,
)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save(plt: Any, figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})  # no version stamp: stable files
    plt.close(figure)


def chart_latency(results: Mapping[str, Any], path: Path) -> None:
    plt = pyplot()
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
    save(plt, figure, path)


def chart_fanout(results: Mapping[str, Any], path: Path) -> None:
    plt = pyplot()
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
    save(plt, figure, path)


def chart_wire(results: Mapping[str, Any], path: Path) -> None:
    plt = pyplot()
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
        [idle_label(k, idle[k]) for k in keys],
        [idle[k]["bytes_per_minute"] for k in keys],
        color=[COLORS[k] for k in keys],
    )
    right.set_yscale("log")
    right.set_ylabel("bytes per minute")
    right.set_title("An idle client, per minute")
    right.tick_params(axis="x", labelrotation=15)
    save(plt, figure, path)


def chart_cold_start(results: Mapping[str, Any], path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 3))
    rows = results["cold_start"]
    names = list(rows)
    axes.barh(names, [rows[n]["as_shipped_ms"] for n in names], color="#756bb1")
    for index, limit in enumerate(sorted(set(footprint.IMPORT_RATIO_LIMITS.values()))):
        axes.axvline(
            rows["boto3"]["as_shipped_ms"] * limit,
            color="grey",
            linestyle=(":", "--", "-.")[index % 3],
            label=f"{limit:g} x boto3",
        )
    axes.set_xlabel("import in a fresh interpreter, ms (median)")
    axes.set_title("Cold-start proxy: import time of each Lambda entry module")
    axes.legend()
    save(plt, figure, path)


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
    plt = pyplot()
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
    save(plt, figure, path)
