"""Names, colours and number formats shared by the page, its charts and the README snippet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def idle_label(key: str, row: Mapping[str, Any]) -> str:
    if key == "polling_short":
        return f"Polling, short (every {row['production_interval_seconds']:g} s)"
    return TRANSPORT_LABELS[key]


def ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:,.1f} ms"


def table_header(*columns: str) -> list[str]:
    return [table_row(*columns), "|" + "---|" * len(columns)]


def table_row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"
