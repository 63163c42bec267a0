"""``local.disorder``: one seed, every kind of disorder, each within its documented bounds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from eventlog.errors import is_throttling
from local.__main__ import parse_args
from local.disorder import DYNAMODB_THROTTLING_CODES, Disorder
from local.stack import LocalConfig, print_banner


def test_a_seed_or_on_and_nothing_else() -> None:
    assert Disorder.parse("42").seed == 42
    fresh = Disorder.parse("on")
    assert 0 <= fresh.seed < 1_000_000
    for bad in ("", "yes", "-1", "1.5"):
        with pytest.raises(ValueError, match="--disorder"):
            Disorder.parse(bad)
    with pytest.raises(ValueError, match="dynamodb_throttle_share"):
        Disorder(seed=1, dynamodb_throttle_share=1.0)  # every request refused: nothing works


def test_the_command_line_and_the_environment_switch_it_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LOCAL_DISORDER", raising=False)
    assert parse_args([]).disorder is None  # orderly unless asked
    assert parse_args(["--disorder", "7"]).disorder == Disorder(seed=7)
    monkeypatch.setenv("LOCAL_DISORDER", "9")
    assert parse_args([]).disorder == Disorder(seed=9)
    monkeypatch.setenv("LOCAL_DISORDER", "sometimes")
    with pytest.raises(SystemExit):
        parse_args([])
    assert "--disorder takes a seed" in capsys.readouterr().err


def test_the_same_seed_makes_the_same_decisions_and_parts_draw_apart() -> None:
    def decisions(disorder: Disorder) -> tuple[list[float], list[bool]]:
        delay, throttled = disorder.message_delay(), disorder.connections_throttled()
        return [delay() for _ in range(50)], [throttled() for _ in range(200)]

    delays, throttles = decisions(Disorder(seed=3))
    assert (delays, throttles) == decisions(Disorder(seed=3))
    assert delays != decisions(Disorder(seed=4))[0]
    assert all(0 <= d <= Disorder(seed=3).message_jitter_seconds for d in delays)
    assert 0 < sum(throttles) < 50  # about 5 % of 200


def test_the_banner_names_the_seed_and_how_to_replay_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1")
    outputs = {"EdgeStack": {"DemoUrl": "http://127.0.0.1:2/"}}
    print_banner(outputs, LocalConfig(auth=False, disorder=Disorder(seed=1234)))
    printed = capsys.readouterr().out
    assert "disorder       on, seed 1234 (replay: make dev DISORDER=1234)" in printed


# --- DynamoDB throttling ------------------------------------------------------------------------


class _CountingDynamoDb(BaseHTTPRequestHandler):
    """Answers every request as DynamoDB answers a GetItem that finds nothing."""

    requests = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests += 1
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def dynamodb_endpoint() -> Iterator[str]:
    _CountingDynamoDb.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CountingDynamoDb)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _client(session: Any, endpoint: str, *, retries: dict[str, Any]) -> Any:
    from botocore.config import Config

    return session.create_client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", **retries}),
    )


def _get(client: Any) -> Any:
    return client.get_item(TableName="events", Key={"channel": {"S": "c"}, "seq": {"N": "1"}})


def test_a_throttled_request_is_refused_before_it_is_sent_and_retried_as_deployed(
    dynamodb_endpoint: str,
) -> None:
    from botocore.session import get_session

    from eventlog.config import DYNAMODB_MAX_ATTEMPTS

    session = get_session()
    disorder = Disorder(seed=11, dynamodb_throttle_share=0.2)
    stop = disorder.throttle_dynamodb(session)
    # Retries configured as eventlog.log.dynamodb_client configures them.
    client = _client(session, dynamodb_endpoint, retries={"max_attempts": DYNAMODB_MAX_ATTEMPTS})
    calls = 25
    retried = 0
    for _ in range(calls):
        reply = _get(client)
        retried += reply["ResponseMetadata"]["RetryAttempts"]
    # Every call succeeded; the throttled attempts never reached the endpoint.
    assert retried > 0
    assert _CountingDynamoDb.requests == calls
    stop()
    _get(_client(session, dynamodb_endpoint, retries={"total_max_attempts": 1}))
    assert _CountingDynamoDb.requests == calls + 1  # stopped: nothing is refused any more


def test_a_refusal_is_a_throttling_error_the_code_recognises(dynamodb_endpoint: str) -> None:
    from botocore.exceptions import ClientError
    from botocore.session import get_session

    session = get_session()
    Disorder(seed=5, dynamodb_throttle_share=0.9999).throttle_dynamodb(session)
    client = _client(session, dynamodb_endpoint, retries={"total_max_attempts": 1})
    codes = set()
    for _ in range(20):
        with pytest.raises(ClientError) as refused:
            _get(client)
        error = refused.value.response
        codes.add(error["Error"]["Code"])
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "not applied" in error["Error"]["Message"]
        assert is_throttling(refused.value)
    assert codes == set(DYNAMODB_THROTTLING_CODES)
    assert _CountingDynamoDb.requests == 0
