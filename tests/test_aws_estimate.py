"""The bench's estimates for a deployment: the local figure with AWS's stream hop swapped in."""

from __future__ import annotations

import pytest

from bench import aws_estimate
from bench.charts import cost_grid
from bench.report import render_page
from bench.snippet import render_snippet
from local.stream_mapping import POLL_INTERVAL_SECONDS

LOCAL = {
    "polling": {"p50_ms": 140.0, "p99_ms": 230.0},
    "sse": {"p50_ms": 50.0, "p99_ms": 80.0},
    "websocket": {"p50_ms": 60.0, "p99_ms": 90.0},
}


def test_polling_has_no_stream_hop_so_its_local_figure_stands() -> None:
    row = aws_estimate.estimate("polling", LOCAL["polling"])
    assert (row.p50_ms, row.p99_ms) == (140.0, 230.0)
    assert row.replaced == ""


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_a_delivery_through_the_stream_swaps_the_local_poller_for_aws_hop(transport: str) -> None:
    row = aws_estimate.estimate(transport, LOCAL[transport])
    interval_ms = POLL_INTERVAL_SECONDS * 1000
    hop = aws_estimate.STREAM_TO_LAMBDA
    assert row.p50_ms == pytest.approx(LOCAL[transport]["p50_ms"] - interval_ms / 2 + hop.p50_ms)
    assert row.p99_ms == pytest.approx(LOCAL[transport]["p99_ms"] - interval_ms + hop.p99_ms)
    assert "DynamoDB stream -> Lambda" in row.replaced


def test_the_committed_results_show_the_estimates_beside_the_local_figures() -> None:
    import json
    from pathlib import Path

    results = json.loads(
        (Path(__file__).resolve().parent.parent / "bench/results.json").read_text()
    )
    expected = aws_estimate.estimates(results)["websocket"]
    snippet = render_snippet(results)
    assert f"AWS about p50 {expected.p50_ms:.0f} ms, p99 {expected.p99_ms:.0f} ms" in snippet
    page = render_page(results, cost_grid(results))
    assert "### Expected on AWS (an estimate, not a measurement)" in page
    assert "bitesizedserverless.com" in page
