"""The metrics module, the structured logs and the local collector, without AWS."""

from __future__ import annotations

import json
import logging

import pytest

from eventlog import metrics, structured_logs
from eventlog.structured_logs import JsonFormatter, ReadableFormatter, fields, redact
from local.metrics import Collector
from tests.auth_support import token
from tests.metrics_support import Emitted, assert_emf

# --- EMF lines ---------------------------------------------------------------------------------


def test_a_line_is_valid_emf_with_its_unit_dimension_and_timestamp() -> None:
    [line] = metrics.lines(
        metrics.WEBSOCKET,
        {metrics.FANOUT_POSTS: 3, metrics.DELIVERY_AGE: [12.5, 40.0]},
        properties={"outcome": "ok", "records": 2},
        now=1_700_000_000.25,
    )
    record = assert_emf(line)
    assert record["_aws"]["Timestamp"] == 1_700_000_000_250
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive == {
        "Namespace": metrics.NAMESPACE,
        "Dimensions": [["Service"]],
        "Metrics": [
            {"Name": "FanoutPosts", "Unit": "Count"},
            {"Name": "DeliveryAge", "Unit": "Milliseconds"},
        ],
    }
    assert (record["Service"], record["FanoutPosts"], record["DeliveryAge"]) == (
        "websocket",
        3,
        [12.5, 40.0],
    )
    assert (record["outcome"], record["records"]) == ("ok", 2)


def test_zero_is_a_value_and_no_values_is_no_metric() -> None:
    [line] = metrics.lines(
        metrics.POLLING, {metrics.LONG_POLL_EMPTY: 0, metrics.LONG_POLL_WAIT: []}
    )
    record = assert_emf(line)
    assert record["LongPollEmpty"] == 0
    assert "LongPollWait" not in record
    assert list(metrics.lines(metrics.POLLING, {metrics.LONG_POLL_WAIT: []})) == []


def test_more_than_a_hundred_values_are_split_over_lines() -> None:
    ages = [float(n) for n in range(250)]
    records = [
        assert_emf(line)
        for line in metrics.lines(
            metrics.WEBSOCKET, {metrics.DELIVERY_AGE: ages, metrics.FANOUT_POSTS: 7}
        )
    ]
    assert [len(r["DeliveryAge"]) for r in records] == [100, 100, 50]
    assert [age for r in records for age in r["DeliveryAge"]] == ages
    assert [r.get("FanoutPosts") for r in records] == [7, None, None]  # counted once


def test_every_metric_has_a_unique_name_and_a_meaning() -> None:
    names = [metric.name for metric in metrics.ALL]
    assert len(names) == len(set(names))
    assert all(
        metric.meaning and metric.unit in ("Count", "Milliseconds") for metric in metrics.ALL
    )


def test_without_a_sink_nothing_is_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    metrics.emit(metrics.EVENTLOG, {metrics.PUBLISH_LATENCY: 1.0})
    assert capsys.readouterr().out == ""


def test_on_lambda_lines_go_to_standard_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "RealtimePolling-Function")
    metrics.emit(metrics.EVENTLOG, {metrics.PUBLISH_LATENCY: 1.0})
    [line] = capsys.readouterr().out.splitlines()
    assert assert_emf(line)["PublishLatency"] == 1.0


def test_an_installed_sink_takes_every_line(emitted: Emitted) -> None:
    metrics.emit(metrics.EVENTLOG, {metrics.SEQS_RETAKEN: 2})
    assert emitted.values(metrics.SEQS_RETAKEN, service=metrics.EVENTLOG) == [2]


# --- Structured logs ---------------------------------------------------------------------------


def test_fields_keep_what_is_known_under_the_shared_names() -> None:
    assert fields(transport="sse", outcome="drain", channel="news", seq=None, events=0) == {
        "transport": "sse",
        "outcome": "drain",
        "channel": "news",
        "events": 0,
    }
    assert set(structured_logs.FIELDS) == {
        "request_id",
        "channel",
        "seq",
        "connection_id",
        "transport",
        "outcome",
    }


def test_a_jwt_anywhere_in_a_record_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = token()
    assert redact(f"GET /stream?token={secret}&after=3") == "GET /stream?token=[token]&after=3"
    structured_logs.install()
    structured_logs.install()  # idempotent: wrapping twice would still work, but once is enough
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("tests.redaction")
    logger.info("query %s", f"token={secret}", extra=fields(transport="sse", connection_id=secret))
    [record] = caplog.records
    assert secret not in caplog.text
    assert secret.split(".")[2] not in caplog.text
    assert record.getMessage() == "query token=[token]"
    assert record.connection_id == "[token]"  # type: ignore[attr-defined]


def test_the_json_formatter_writes_lambdas_shape_with_the_fields() -> None:
    record = logging.LogRecord(
        "sse_service.app", logging.WARNING, __file__, 1, "cut %s", ("x",), None
    )
    for key, value in fields(transport="sse", outcome="overflow", channel="news").items():
        setattr(record, key, value)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING"
    assert (line["message"], line["logger"]) == ("cut x", "sse_service.app")
    assert line["timestamp"].endswith("+00:00")
    assert (line["transport"], line["outcome"], line["channel"]) == ("sse", "overflow", "news")
    readable = ReadableFormatter().format(record)
    assert readable.endswith("cut x [transport=sse outcome=overflow channel=news]")


def test_the_json_formatter_names_an_exception_without_a_token() -> None:
    secret = token()
    try:
        raise ValueError(f"bad {secret}")
    except ValueError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), (ValueError, exc, exc.__traceback__)
        )
    line = json.loads(JsonFormatter().format(record))
    assert (line["errorType"], line["errorMessage"]) == ("ValueError", "bad [token]")
    assert line["stackTrace"]


# --- The local collector -----------------------------------------------------------------------


def test_the_collector_reads_lines_as_cloudwatch_would() -> None:
    collector = Collector()
    for line in [
        *metrics.lines(
            metrics.WEBSOCKET, {metrics.FANOUT_POSTS: 2, metrics.DELIVERY_AGE: [10.0, 30.0]}
        ),
        *metrics.lines(metrics.WEBSOCKET, {metrics.FANOUT_POSTS: 1, metrics.DELIVERY_AGE: [20.0]}),
        *metrics.lines(metrics.EVENTLOG, {metrics.PUBLISH_LATENCY: 4.0}),
    ]:
        collector(line)
    summary = collector.summary()
    posts = summary["websocket"]["FanoutPosts"]
    assert (posts["unit"], posts["samples"], posts["sum"], posts["last"]) == ("Count", 2, 3.0, 1.0)
    age = summary["websocket"]["DeliveryAge"]
    assert (age["samples"], age["min"], age["max"], age["p50"]) == (3, 10.0, 30.0, 20.0)
    assert summary["eventlog"]["PublishLatency"]["max"] == 4.0
    assert collector.lines == 3
