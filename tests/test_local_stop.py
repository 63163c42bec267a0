"""``make dev`` stops quietly on Ctrl-C: exit code 0, and no traceback in its output."""

from __future__ import annotations

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
