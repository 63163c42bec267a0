"""The ``emitted`` fixture: every EMF line the code under test emits, checked against the spec.

The checks follow CloudWatch's embedded metric format specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html): an ``_aws`` object with an integer
``Timestamp`` in epoch milliseconds and ``CloudWatchMetrics`` directives, each with a
``Namespace``, ``Dimensions`` (arrays of root member names whose values are strings) and
``Metrics`` (``Name``, ``Unit``) whose values are root members: a number, or an array of
at most 100 numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventlog import metrics

UNITS = {"Count", "Milliseconds", "Seconds", "Bytes", "Percent", "None"}


def assert_emf(line: str) -> dict[str, Any]:
    """Parse ``line`` and check it is a valid EMF record; return the record."""
    assert "\n" not in line  # one log event
    record: dict[str, Any] = json.loads(line)
    meta = record["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert meta["Timestamp"] > 1_000_000_000_000  # milliseconds, not seconds
    assert meta["CloudWatchMetrics"]
    for directive in meta["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str)
        assert directive["Namespace"]
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            assert all(isinstance(record[name], str) for name in dimension_set)
        assert 1 <= len(directive["Metrics"]) <= 100
        for definition in directive["Metrics"]:
            assert set(definition) == {"Name", "Unit"}
            assert definition["Unit"] in UNITS
            value = record[definition["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return record


@dataclass
class Emitted:
    """The lines a test's code emitted, in order."""

    lines: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [assert_emf(line) for line in self.lines]

    def values(self, metric: metrics.Metric, *, service: str | None = None) -> list[float]:
        """Every value of ``metric`` emitted (by ``service``, if given), in order."""
        found: list[float] = []
        for record in self.records():
            for directive in record["_aws"]["CloudWatchMetrics"]:
                names = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
                if directive["Namespace"] != metric.namespace or metric.name not in names:
                    continue
                assert names[metric.name] == metric.unit
                if service is not None and record[metrics.SERVICE_DIMENSION] != service:
                    continue
                value = record[metric.name]
                found += value if isinstance(value, list) else [value]
        return found


@pytest.fixture
def emitted() -> Iterator[Emitted]:
    captured = Emitted()
    metrics.use_sink(captured.lines.append)
    yield captured
    metrics.use_sink(None)
