"""``make dev`` stops quietly on Ctrl-C (exit code 0, no traceback), and leaves nothing running."""

from __future__ import annotations

import socket
import time
from pathlib import Path

pytest_plugins = ("tests.e2e_support",)


def test_ctrl_c_stops_the_local_stack_cleanly(tmp_path: Path) -> None:
    from tests.e2e_support import launched, stop  # a plugin: pytest imports it first

    with launched(tmp_path) as (process, stack):
        stop(process)  # SIGINT, as Ctrl-C sends
        assert process.returncode == 0
    output = stack.log_file.read_text(errors="replace")
    assert "stopping..." in output
    assert "Traceback" not in output
    assert "CancelledError" not in output
    assert "ERROR" not in output


def _dynamodb_address(outputs: dict[str, dict[str, str]]) -> tuple[str, int]:
    from urllib.parse import urlsplit

    from eventlog import endpoints

    url = urlsplit(outputs[endpoints.EVENT_LOG_STACK][endpoints.LOCAL_DYNAMODB_ENDPOINT])
    assert url.hostname is not None
    assert url.port is not None
    return url.hostname, url.port


def _gone_within(address: tuple[str, int], seconds: float) -> bool:
    """True once nothing accepts connections on ``address``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_the_dynamodb_process_stops_with_the_stack(tmp_path: Path) -> None:
    """DynamoDB runs in a process of its own (``local.dynamodb``): Ctrl-C stops it too."""
    from tests.e2e_support import launched, stop

    with launched(tmp_path) as (process, stack):
        address = _dynamodb_address(stack.outputs)
        socket.create_connection(address, timeout=5).close()  # it serves while up
        stop(process)
    assert _gone_within(address, 10), f"DynamoDB still answers on {address} after Ctrl-C"


def test_the_dynamodb_process_stops_when_the_stack_is_killed(tmp_path: Path) -> None:
    """A stack killed outright (no cleanup at all) leaves no DynamoDB holding its port."""
    from tests.e2e_support import launched

    with launched(tmp_path) as (process, stack):
        address = _dynamodb_address(stack.outputs)
        process.kill()
        process.wait()
    assert _gone_within(address, 10), f"DynamoDB still answers on {address} after a kill"
