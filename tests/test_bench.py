"""The benchmark keeps working: its quick mode end to end, and the pieces it computes with.

The quick run starts the local stack, an SSE process, the local WebSocket gateway and
fan-out functions, all on 127.0.0.1; what is checked is that every documented key of
``results.json`` holds a number and that the page and charts are written. No figure is
asserted against a time: the run prints its targets instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import footprint, gateway_fanout, latency, results
from bench.snippet import render_snippet
from local.transports import absent_transports

ROOT = Path(__file__).resolve().parent.parent

# The benchmark compares the three transports, and refuses to run without one of them.
pytestmark = pytest.mark.skipif(
    bool(absent_transports()),
    reason=f"make bench compares all three transports; removed here: {absent_transports()}",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-quick")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    print(completed.stderr[-2000:])  # the step timings, for whoever reads the test log
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.timeout(120)
def test_the_quick_run_writes_a_number_for_every_documented_key(
    quick_run: tuple[Path, dict[str, Any]],
) -> None:
    _, data = quick_run
    assert results.missing_or_not_numeric(data) == []
    assert data["meta"]["mode"] == "quick"
    for name in ("polling", "sse", "websocket"):
        row = data["latency"][name]
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["samples"] > 0
    assert all(row["held"] == row["n"] + 1 for row in data["fanout"]["sse"]["rows"])
    print(json.dumps(data["targets"], indent=1))


def test_the_quick_run_writes_the_page_and_its_charts(
    quick_run: tuple[Path, dict[str, Any]],
) -> None:
    out, data = quick_run
    page = (out / "TRADEOFFS.md").read_text()
    for chart in ("latency", "fanout", "wire", "cold_start", "cost"):
        assert (out / "charts" / f"{chart}.png").read_bytes().startswith(b"\x89PNG")
        assert f"charts/{chart}.png" in page
    for key in results.SCHEMA:
        assert f"`{key}`" in page
    for target in data["targets"].values():
        assert target["what"] in page
        assert isinstance(target["met"], bool)
    snippet = render_snippet(data)
    assert "| **Latency, publish to deliver (local; expected on AWS, an estimate)** |" in snippet
    assert "docs/TRADEOFFS.md" in snippet


def test_missing_or_not_numeric_names_each_bad_key() -> None:
    good = {"meta": {"seed": 1, "cpus": 2, "duration_seconds": 3.0}}
    bad = results.missing_or_not_numeric(good)
    assert "meta.seed" not in bad
    assert "latency.sse.p50_ms" in bad
    rows: dict[str, Any] = {"fanout": {"sse": {"rows": [{"n": 1}, {"n": "x"}]}}}
    assert "fanout.sse.rows[].n" in results.missing_or_not_numeric(rows)
    rows["fanout"]["sse"]["rows"] = [{"n": float("nan")}]
    assert "fanout.sse.rows[].n" in results.missing_or_not_numeric(rows)


def test_every_lambda_entry_module_has_an_import_target() -> None:
    cold_start = {"boto3": {"as_shipped_ms": 100.0}} | {
        handler.key: {"as_shipped_ms": 140.0, "ratio_to_boto3": 1.4}
        for handler in footprint.HANDLERS
    }
    checks = footprint.import_checks(cold_start)

    assert set(checks) == {
        "import_polling",
        "import_websocket_routes",
        "import_websocket_fanout",
        "import_websocket_authorizer",
    }
    assert checks["import_polling"][1:3] == ("<=", 1.5)
    assert checks["import_websocket_routes"][1:3] == ("<=", 1.3)


def test_percentiles_are_measured_samples() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert latency.percentile(samples, 0.50) == 50.0
    assert latency.percentile(samples, 0.95) == 95.0
    assert latency.percentile(samples, 0.99) == 99.0
    assert latency.percentile([7.0], 0.99) == 7.0


def test_dynamodb_item_sizes_follow_its_rules() -> None:
    # names count, strings by UTF-8 length, numbers about a byte per two digits plus one
    assert gateway_fanout.item_bytes({"pk": {"S": "channel#news"}}) == 2 + 12
    assert gateway_fanout.number_bytes("1764322020") == 6
    assert gateway_fanout.number_bytes("0") == 2
    assert gateway_fanout.item_bytes({"é": {"S": "é"}}) == 4
    with pytest.raises(ValueError, match="unsized"):
        gateway_fanout.item_bytes({"b": {"B": b"x"}})


def test_a_stream_record_is_what_the_fanout_handler_reads() -> None:
    from websocket_api.fanout import event_frame

    encoded = '{"channel":"news","seq":7,"data":1,"time":"2026-11-28T08:47:00.000Z"}'
    channel, frame = event_frame(gateway_fanout.stream_record(encoded, 7)) or ("", "")
    assert channel == "news"
    assert '"seq":7,' in frame


@pytest.mark.parametrize(("bytecode", "ratio"), [(True, 1.5), (False, 2.0)])
def test_import_ratios_are_taken_as_the_assets_ship(bytecode: bool, ratio: float) -> None:
    # Assets with bytecode (precompile found a Python 3.12) compile nothing at a cold start.
    imports: dict[str, Any] = {
        "boto3": {"compiled_ms": 100.0, "from_source_ms": 100.0},
        "polling_handler": {"compiled_ms": 150.0, "from_source_ms": 200.0},
    }
    assets = {"polling": {"pyc_files": 10.0 if bytecode else 0.0}, "websocket": {"pyc_files": 5.0}}
    footprint.add_ratios(imports, bytecode=footprint.ships_bytecode(assets))
    assert imports["polling_handler"]["ratio_to_boto3"] == ratio
    assert "ratio_to_boto3" not in imports["boto3"]
