"""``python -m client``: argument parsing, exit statuses and messages, and a run against the
real polling app (uvicorn on 127.0.0.1, its log on in-process moto)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auth.claims import grant
from client.cli import EXIT_FAILED, EXIT_USAGE, build_parser, main
from eventlog.endpoints import (
    EDGE_STACK,
    LOCAL_DEV_TOKEN_URL,
    LOCAL_OUTPUTS_FILE,
    POLLING_API_URL,
    POLLING_STACK,
    SSE_STACK,
    SSE_URL,
)
from eventlog.log import EventLog
from local.dev_auth import DEV_TOKEN_PATH, dev_token_route
from polling.app import create_app
from tests.auth_support import TEST_SECRET, token, verifier
from tests.client_support import RETENTION_SECONDS, Clock, live

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def outputs_file(tmp_path: Path, outputs: dict[str, dict[str, str]]) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return str(path)


# --- parsing --------------------------------------------------------------------------------


def test_publish_arguments() -> None:
    args = build_parser().parse_args(["publish", "news", '{"n": 1}'])
    assert (args.command, args.channel, args.data) == ("publish", "news", {"n": 1})
    # No --transport: the first one the endpoints file offers (client.cli.chosen_transport).
    assert (args.transport, args.endpoints, args.token) == (None, LOCAL_OUTPUTS_FILE, None)


def test_subscribe_arguments_and_defaults() -> None:
    args = build_parser().parse_args(["subscribe", "news", "--transport", "sse"])
    assert (args.transport, args.after, args.count, args.wait) == ("sse", None, None, 20)
    args = build_parser().parse_args(
        ["subscribe", "news", "--transport", "websocket", "--after", "0", "--count", "3"]
    )
    assert (args.transport, args.after, args.count) == ("websocket", 0, 3)


def test_common_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--endpoints", "a.json", "--token", "t", "publish", "c", "1"])
    after = parser.parse_args(["publish", "c", "1", "--endpoints", "a.json", "--token", "t"])
    for args in (before, after):
        assert (args.endpoints, args.token) == (Path("a.json"), "t")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "bad channel", "1"], "channel must be 1-64 characters"),
        (["publish", "news", "{not json"], "not JSON"),
        (["publish", "news", "hello"], "quote strings"),
        (["subscribe", "news", "--after", "-1"], "non-negative integer"),
        (["subscribe", "news", "--count", "0"], "positive whole number"),
        (["subscribe", "news", "--wait", "30"], "0 to 25"),
        (["subscribe", "news", "--transport", "carrier-pigeon"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_exits_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(*argv)
    assert status == EXIT_USAGE
    assert out == ""
    assert message in capsys.readouterr().err  # argparse writes to the real stderr


# --- endpoints ------------------------------------------------------------------------------


def test_a_missing_endpoints_file_exits_2_and_says_how_to_get_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    status, out, err = run("--endpoints", str(missing), "publish", "news", "1")
    assert status == EXIT_USAGE
    assert out == ""
    assert str(missing) in err
    assert "make dev" in err


def test_an_unreadable_endpoints_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text("{not json")
    status, _, err = run("publish", "news", "1", "--endpoints", str(path))
    assert status == EXIT_USAGE
    assert "cannot read the endpoints file" in err


def test_an_endpoints_file_without_the_transport_exits_2(tmp_path: Path) -> None:
    path = outputs_file(tmp_path, {POLLING_STACK: {POLLING_API_URL: "http://127.0.0.1:9"}})
    status, _, err = run("subscribe", "news", "--transport", "sse", "--endpoints", path)
    assert status == EXIT_USAGE
    assert "no SseUrl: sse is not deployed there (transports offered: polling)" in err


def test_without_transport_the_first_one_offered_is_used(tmp_path: Path) -> None:
    # The SSE service's address, closed: the CLI tried SSE, the only transport offered.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = outputs_file(tmp_path, {SSE_STACK: {SSE_URL: f"http://127.0.0.1:{port}"}})
    status, _, err = run("publish", "news", "1", "--endpoints", path)
    assert status == EXIT_FAILED
    assert f"127.0.0.1:{port}" in err


def test_an_endpoints_file_with_no_transport_exits_2(tmp_path: Path) -> None:
    path = outputs_file(tmp_path, {EDGE_STACK: {}})
    status, _, err = run("publish", "news", "1", "--endpoints", path)
    assert status == EXIT_USAGE
    assert "the endpoints offer no transport" in err


def test_an_unreachable_service_exits_1(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = outputs_file(tmp_path, {POLLING_STACK: {POLLING_API_URL: f"http://127.0.0.1:{port}"}})
    status, out, err = run("publish", "news", "1", "--endpoints", path)
    assert status == EXIT_FAILED
    assert out == ""
    assert "unreachable" in err


def test_python_dash_m_client_runs_from_the_repository_root(tmp_path: Path) -> None:
    """Without PYTHONPATH: the package finds the event log's modules itself."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "client",
            "--endpoints",
            str(tmp_path / "x.json"),
            "publish",
            "c",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "no endpoints file" in result.stderr


# --- against the polling app ----------------------------------------------------------------


ISSUED: list[str] = []
"""The tokens the dev token endpoint below handed out, in order."""


def recording_token_route() -> Route:
    """The local stack's ``POST /dev/token``, noting each token it issues in ``ISSUED``."""
    issue = dev_token_route(secret=TEST_SECRET).endpoint

    async def recording(request: Request) -> Response:
        response: Response = await issue(request)
        if response.status_code == 200:
            ISSUED.append(json.loads(bytes(response.body))["token"])
        return response

    return Route(DEV_TOKEN_PATH, recording, methods=["POST"])


@pytest.fixture
def servers(event_log: EventLog) -> Iterator[tuple[str, str]]:
    """The polling API (auth on, the tests' secret), and a dev token endpoint for it."""
    ISSUED.clear()
    with (
        live(create_app(log=event_log)) as polling,
        live(FastAPI(routes=[recording_token_route()])) as tokens,
    ):
        yield polling.url(""), tokens.url(DEV_TOKEN_PATH)


@pytest.fixture
def endpoints_file(servers: tuple[str, str], tmp_path: Path) -> str:
    """As the local stack writes it: with the development token endpoint."""
    polling_url, token_url = servers
    # An output may sit in any stack: the file is found by output key.
    return outputs_file(
        tmp_path,
        {
            SSE_STACK: {},
            POLLING_STACK: {POLLING_API_URL: polling_url},
            EDGE_STACK: {LOCAL_DEV_TOKEN_URL: token_url},
        },
    )


@pytest.fixture
def deployed_file(servers: tuple[str, str], tmp_path: Path) -> str:
    """As ``cdk deploy`` writes it: no token endpoint."""
    return outputs_file(tmp_path, {POLLING_STACK: {POLLING_API_URL: servers[0]}})


def test_publish_prints_the_event(endpoints_file: str) -> None:
    status, out, err = run("publish", "news", '{"n": 1}', "--endpoints", endpoints_file)
    assert (status, err) == (0, "")
    event = json.loads(out)
    assert (event["channel"], event["seq"], event["data"]) == ("news", 1, {"n": 1})
    assert out.endswith("\n")


def test_subscribe_prints_one_event_per_line_and_reports_a_reset(
    endpoints_file: str, event_log: EventLog, clock: Clock
) -> None:
    event_log.publish("news", "expired")
    clock.advance(RETENTION_SECONDS + 1)
    retained = [event_log.publish("news", n) for n in range(2)]
    status, out, err = run(
        "subscribe", "news", "--after", "0", "--count", "2", "--endpoints", endpoints_file
    )
    assert status == 0
    assert out.splitlines() == [event.encode() for event in retained]
    assert err == "reset: events 1-1 are no longer retained; continuing\n"


def test_a_refusal_exits_1_with_the_problem(endpoints_file: str) -> None:
    status, out, err = run(
        "publish", "news", json.dumps("x" * 40_000), "--endpoints", endpoints_file
    )
    assert status == EXIT_FAILED
    assert out == ""
    assert "413 event_too_large" in err


# --- tokens ---------------------------------------------------------------------------------


def test_against_the_local_stack_a_token_for_just_the_channel_is_fetched(
    endpoints_file: str, event_log: EventLog
) -> None:
    status, out, err = run("publish", "news", "1", "--endpoints", endpoints_file)
    assert (status, err) == (0, "")
    assert json.loads(out)["seq"] == 1
    # The one token it asked for grants exactly what the command needs, nothing more.
    [issued] = ISSUED
    claims = verifier().verify(issued)
    assert claims.grants == (grant("news", "publish"),)
    assert not claims.allows("news", "subscribe")
    assert not claims.allows("news2", "publish")


def test_without_a_token_endpoint_the_cli_says_to_pass_one(deployed_file: str) -> None:
    status, out, err = run("publish", "news", "1", "--endpoints", deployed_file)
    assert status == EXIT_FAILED
    assert out == ""
    assert "401 unauthorized" in err
    assert "pass --token" in err
    status, out, err = run(
        "publish",
        "news",
        "2",
        "--endpoints",
        deployed_file,
        "--token",
        token(grant("news", "publish")),
    )
    assert (status, err) == (0, "")
    status, _, err = run(
        "subscribe",
        "news",
        "--after",
        "0",
        "--endpoints",
        deployed_file,
        "--token",
        token(grant("news", "publish")),
    )
    assert status == EXIT_FAILED
    assert "403 forbidden" in err


def test_the_token_command_signs_with_the_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "dev-secret"
    secret_file.write_text(TEST_SECRET + "\n")
    status, out, err = run(
        "token",
        "--channel",
        "news*",
        "--channel",
        "chat",
        "--scope",
        "subscribe",
        "--ttl",
        "15m",
        "--secret-file",
        str(secret_file),
    )
    assert (status, err) == (0, "")
    claims = verifier().verify(out.strip())
    assert claims.subject == "dev"
    assert claims.grants == (grant("news*", "subscribe"), grant("chat", "subscribe"))
    assert claims.expires_at is not None
    assert 14 * 60 < claims.expires_at - time.time() <= 15 * 60 + 1  # exp is rounded up
    status, out, _ = run("token", "--secret-file", str(secret_file))
    assert verifier().verify(out.strip()).grants == (grant("*", "subscribe", "publish"),)


def test_the_token_command_signs_with_a_deployments_secret(aws: None) -> None:
    import boto3

    # What a backend does with the AuthSecretArn output, and what smoke tests use.
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="signing", SecretString=TEST_SECRET)["ARN"]
    status, out, err = run("token", "--channel", "news", "--secret-arn", arn)
    assert (status, err) == (0, "")
    assert verifier().verify(out.strip()).grants == (grant("news", "subscribe", "publish"),)

    status, out, err = run("token", "--secret-arn", arn + "-missing")
    assert (status, out) == (EXIT_USAGE, "")
    assert "cannot read the secret" in err
    assert "ResourceNotFoundException" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "--secret-file", "/nonexistent/dev-secret"], "make dev"),
        (["token", "--channel", "a b"], "pattern"),
        (["token", "--ttl", "2d"], "lifetime"),
        (["token", "--scope", "admin"], "invalid choice"),
    ],
)
def test_token_command_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(*argv)
    assert status == EXIT_USAGE
    assert out == ""
    assert message in err + capsys.readouterr().err
