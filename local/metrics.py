"""What the dashboard would show, without AWS: the metric lines the local handlers emit.

On AWS the functions' embedded-metric-format lines go to CloudWatch Logs, which turns them
into the metrics the dashboard graphs and the alarms watch (``eventlog.metrics``,
``infra.operations``). Here the same lines go to a ``Collector`` (the sink of every
handler in the local stack's process), which reads them as CloudWatch would, by their
``_aws`` directives, and keeps a summary per service and metric: samples, sum, min, max,
the last value, and p50/p99 of the recent ones. The demo server serves it at
``GET /metrics``; nothing is printed, so ``make dev`` stays readable.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RECENT_VALUES = 1_000
"""Values kept per metric for its percentiles: the recent ones, as a one-minute period would."""


@dataclass
class _Series:
    unit: str
    samples: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    last: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_VALUES))

    def add(self, value: float) -> None:
        self.samples += 1
        self.total += value
        self.low, self.high, self.last = min(self.low, value), max(self.high, value), value
        self.recent.append(value)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.recent)

        def percentile(fraction: float) -> float:
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

        return {
            "unit": self.unit,
            "samples": self.samples,
            "sum": round(self.total, 3),
            "min": round(self.low, 3),
            "max": round(self.high, 3),
            "last": round(self.last, 3),
            "p50": round(percentile(0.5), 3),
            "p99": round(percentile(0.99), 3),
        }


class Collector:
    """A metrics sink (``eventlog.metrics.use_sink``) that sums what it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the fan-out emits from its own thread
        self._series: dict[tuple[str, str, str], _Series] = {}
        self.lines = 0

    def __call__(self, line: str) -> None:
        record = json.loads(line)
        with self._lock:
            self.lines += 1
            for directive in record["_aws"]["CloudWatchMetrics"]:
                (dimensions,) = directive["Dimensions"]  # every metric here has one set
                service = "/".join(str(record[name]) for name in dimensions)
                for metric in directive["Metrics"]:
                    name = metric["Name"]
                    values = record[name] if isinstance(record[name], list) else [record[name]]
                    key = (directive["Namespace"], service, name)
                    series = self._series.setdefault(key, _Series(unit=metric["Unit"]))
                    for value in values:
                        series.add(float(value))

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{service: {metric: {unit, samples, sum, min, max, last, p50, p99}}}``."""
        with self._lock:
            result: dict[str, dict[str, dict[str, Any]]] = {}
            for (_namespace, service, name), series in sorted(self._series.items()):
                result.setdefault(service, {})[name] = series.summary()
            return result
