"""A second ``make dev`` leaves the running one alone and says how to run another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.e2e_support import LocalStack

ROOT = Path(__file__).resolve().parent.parent


def test_a_second_stack_on_the_same_endpoints_file_is_refused(local_stack: LocalStack) -> None:
    before = local_stack.outputs_file.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "local", "--outputs", str(local_stack.outputs_file)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'functions'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "already running" in line
    assert str(local_stack.endpoints.demo_url) in line
    assert "--outputs" in line  # the way to run a second one
    # The running stack's endpoints file is untouched, so its clients still find it.
    assert local_stack.outputs_file.read_text() == before


def test_a_file_left_by_a_stack_that_died_does_not_block_a_start(tmp_path: Path) -> None:
    from local.stack import refuse_if_running

    stale = tmp_path / "outputs.json"
    stale.write_text(json.dumps({"RealtimeEdge": {"DemoUrl": "http://127.0.0.1:9/"}}))
    refuse_if_running(stale)  # nothing answers on port 9: no error
