"""What each handler logs and emits: the fields an operator searches by, the delivery metrics,
and never a token or an event's body. The event log's own here; each transport's in
``tests/<transport>/test_<transport>_telemetry.py``, with the same ``BODY_MARKER``."""

from __future__ import annotations

from typing import Any

import pytest

from eventlog import EventLog, metrics
from tests.metrics_support import Emitted

BODY_MARKER = "body-that-must-not-be-logged-7c1e"


def extras(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, Any]]:
    return [vars(r) for r in caplog.records if r.name == logger]


# --- Publish -----------------------------------------------------------------------------------


def test_a_publish_emits_its_latency_and_the_contention_it_met(
    log: EventLog, emitted: Emitted
) -> None:
    log.publish("news", 1)
    log._fill("news", 2)  # a reader settled seq 2 as abandoned: the next publish must retake
    log.publish("news", {"note": BODY_MARKER})
    assert emitted.values(metrics.SEQS_RETAKEN, service=metrics.EVENTLOG) == [0, 1]
    assert emitted.values(metrics.HEAD_REBUILDS, service=metrics.EVENTLOG) == [0, 0]
    latencies = emitted.values(metrics.PUBLISH_LATENCY, service=metrics.EVENTLOG)
    assert len(latencies) == 2
    assert all(latency > 0 for latency in latencies)
    assert not any(BODY_MARKER in line for line in emitted.lines)
