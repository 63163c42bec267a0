"""The CLI says why: the close code and its meaning, the status, the URL it tried."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from client.cli import EXIT_FAILED, main
from client.errors import ClientError, close_cause
from eventlog import endpoints

if TYPE_CHECKING:
    from tests.e2e_support import LocalStack


def run(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), err.getvalue()


def test_a_frame_too_big_for_api_gateway_names_close_1009(local_stack: LocalStack) -> None:
    # The local gateway closes as API Gateway does: 1009 for a frame over 32 KB.
    data = json.dumps({"x": "a" * 40_000})
    status, err = run(
        "publish", "news", data, "--transport", "websocket",
        "--endpoints", str(local_stack.outputs_file),
    )  # fmt: skip
    assert status == EXIT_FAILED
    assert "connection_lost" in err
    assert "close 1009, a message too big" in err
    assert "exceeds limit of 32768 bytes" in err  # the server's own reason, passed on


def test_an_unreachable_endpoint_is_named(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stale = tmp_path / "outputs.json"
    url = f"http://127.0.0.1:{port}"
    stale.write_text(json.dumps({endpoints.POLLING_STACK: {endpoints.POLLING_API_URL: url}}))
    status, err = run("publish", "news", "{}", "--endpoints", str(stale), "--token", "t")
    assert status == EXIT_FAILED
    assert f"unreachable: cannot connect to {url}/channels/news/events" in err


def test_statuses_read_as_http_and_local_failures_have_none() -> None:
    refused = ClientError(status=403, code="forbidden", detail="no")
    lost = ClientError(status=None, code="connection_lost", detail="gone")
    assert (str(refused), str(lost)) == ("HTTP 403 forbidden: no", "connection_lost: gone")
    assert close_cause(None, None) == ""
    assert close_cause(4000, "custom") == "close 4000, an unlisted close code: custom"
