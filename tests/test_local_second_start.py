"""A second ``make dev`` leaves the running one alone and says how to run another."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.e2e_support import LocalStack

from local.__main__ import parse_args

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
    # The way to run a second one: a command that moves every port, so it cannot clash.
    suggested = shlex.split(line.split("file: ", 1)[1])
    assert suggested[:3] == [".venv/bin/python", "-m", "local"]
    config = parse_args(suggested[3:])
    assert config.outputs_file != local_stack.outputs_file
    assert set(dataclasses.astuple(config.ports)) == {0}
    # The running stack's endpoints file is untouched, so its clients still find it.
    assert local_stack.outputs_file.read_text() == before


def test_a_file_left_by_a_stack_that_died_does_not_block_a_start(tmp_path: Path) -> None:
    from local.stack import refuse_if_running

    stale = tmp_path / "outputs.json"
    stale.write_text(json.dumps({"RealtimeEdge": {"DemoUrl": "http://127.0.0.1:9/"}}))
    refuse_if_running(stale)  # nothing answers on port 9: no error
