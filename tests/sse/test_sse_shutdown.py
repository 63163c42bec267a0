"""SIGTERM, as ECS sends it, to the service run exactly as the container runs it.

``python -m sse_service`` in a subprocess (uvicorn, uvloop, httptools, the
container's settings from the environment, auth on with the tests' secret), its
event log on a moto server. Its output, which in ECS goes to CloudWatch Logs, must
never show a token.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auth.claims import grant
from eventlog import EventLog, schema
from eventlog.config import Settings
from tests.auth_support import token
from tests.sse_support import SseClient

ROOT = Path(__file__).resolve().parents[2]
DRAIN_SECONDS = 1.0


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from local.moto_fidelity import atomic_requests

    with atomic_requests():  # DynamoDB never shows a reader half a transaction; moto would
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture
def remote_log(moto_endpoint: str) -> EventLog:
    import boto3

    client: Any = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    schema.create_table(client, schema.EVENTS_TABLE, "shutdown-events")
    return EventLog(settings=Settings(events_table_name="shutdown-events"), client=client)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with SseClient(port, "/healthz") as health:
                if health.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the service did not start")


def test_sigterm_stops_accepting_and_ends_every_stream_cleanly(
    moto_endpoint: str, remote_log: EventLog
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "functions"),
        "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint,
        "EVENTS_TABLE_NAME": "shutdown-events",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SSE_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "SSE_READER_INTERVAL_SECONDS": "0.05",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "sse_service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_serving(port, process)
        # As a browser's EventSource sends it: in the query string, which must never be logged.
        secret_token = token(grant("drain*", "subscribe"))
        with SseClient(port, "/channels/drain0/stream") as refused:
            assert refused.status == 401
        clients = [
            SseClient(port, f"/channels/drain{n % 2}/stream?token={secret_token}") for n in range(4)
        ]
        for client in clients:
            assert client.status == 200
            next(client.messages(until=time.monotonic() + 5))  # the preamble: subscribed
        event = remote_log.publish("drain0", "before the signal")
        assert [m.json() for m in clients[0].events(1)] == [event.to_dict()]

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        ended = []
        for client in clients:
            list(client.messages(until=signalled + 2 * DRAIN_SECONDS + 2))
            assert client.ended_cleanly, "a stream was cut instead of ended"
            ended.append(round(time.monotonic() - signalled, 2))
            client.close()
        with pytest.raises(ConnectionRefusedError):
            SseClient(port, "/channels/drain0/stream")  # no longer accepting
        # uvicorn shuts down cleanly, then re-raises the signal: the exit status names it.
        assert process.wait(timeout=10) == -signal.SIGTERM
        stopped = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        stdout, stderr = process.communicate()
    print(f"streams ended at {ended} s after SIGTERM; the process exited after {stopped:.2f} s")
    # The container logs JSON lines on standard output, for the awslogs driver.
    logged = [json.loads(line) for line in stdout.splitlines()]
    assert any(line.get("message", "").startswith("draining 4 streams") for line in logged)
    assert all(line["level"] in ("INFO", "WARNING") for line in logged if "level" in line)
    assert "Traceback" not in stdout + stderr, stdout + stderr
    assert secret_token not in stdout + stderr
    assert "/channels/drain" not in stdout + stderr  # no access log at all
