"""What each handler logs and emits: the fields an operator searches by, the delivery metrics,
and never a token or an event's body. The event log's own here; each transport's in
``tests/<transport>/test_<transport>_telemetry.py``, with the same ``BODY_MARKER``."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from eventlog import EventLog, metrics
from tests.auth_support import ALL_ACCESS, bearer, token
from tests.metrics_support import Emitted

BODY_MARKER = "body-that-must-not-be-logged-7c1e"


def extras(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, Any]]:
    return [vars(r) for r in caplog.records if r.name == logger]


REQUEST_LOG = "eventlog.http_api"
"""The logger of ``eventlog.http_api.RequestLog``, which the polling API and SSE share."""


async def check_the_request_log(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    *,
    transport: str,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """A publish, a page read and a refusal on the log's HTTP API of ``client``: a line
    each, with route, channel, seq and outcome, and never the token or the body. The
    publish is sent with ``headers``; the lines are returned for further checks."""
    caplog.set_level(logging.INFO, logger=REQUEST_LOG)
    secret = token()
    events = "/channels/news/events"
    published = await client.post(
        events, params={"token": secret}, json={"data": BODY_MARKER}, headers=headers
    )
    assert published.status_code == 201
    read = await client.get(events, params={"after": 1}, headers=bearer(ALL_ACCESS))
    assert read.json()["events"] == []
    refused = await client.get(events, params={"token": "nope"})
    assert refused.status_code == 401
    lines = extras(caplog, REQUEST_LOG)
    assert [(line["outcome"], line["channel"], line.get("seq")) for line in lines] == [
        ("ok", "news", 1),
        ("empty", "news", 1),
        ("http_401", "news", None),
    ]
    assert {line["transport"] for line in lines} == {transport}
    assert next(r.getMessage() for r in caplog.records if r.name == REQUEST_LOG) == (
        "POST /channels/{channel}/events 201"
    )
    assert secret not in caplog.text
    assert BODY_MARKER not in caplog.text
    return lines


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
