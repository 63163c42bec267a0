"""The stack under test: the local one as a subprocess, or any stack's endpoints file.

A subprocess (``python -m local``, what ``make dev`` runs) rather than the stack
inside the benchmark's process: the benchmark's clients must not share a GIL and an
event loop with the servers they time, and the stack points every boto3 client of
its process at its own DynamoDB. Every port is 0, so the benchmark runs beside a
developer's ``make dev``. Given ``--outputs PATH`` instead (e.g. the file ``make
deploy`` writes), the benchmark measures that stack and starts nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from eventlog.endpoints import Endpoints

ROOT = Path(__file__).resolve().parent.parent

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
PORT_NAMES = ("demo", "polling", "sse", "websocket", "management", "dynamodb", "broker")


@dataclass(frozen=True, kw_only=True)
class Stack:
    endpoints: Endpoints
    local: bool
    """Started by the benchmark (so its intervals could be configured)."""


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, with the project's folders importable."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


@contextlib.contextmanager
def local_stack(*, environment: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """``python -m local`` on free ports until the block ends (then Ctrl-C, as a developer)."""
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as folder:
        outputs_file = Path(folder) / "outputs.json"
        log_file = Path(folder) / "stack.log"
        ports = [f"--{name}-port=0" for name in PORT_NAMES]
        # Output to a file: a pipe nobody reads would fill up and block the stack.
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "local", *ports, "--outputs", str(outputs_file)],
                cwd=ROOT,
                env=child_environment(environment),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not outputs_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"`python -m local` did not start (exit {process.poll()}); "
                        f"its output:\n{_tail(log_file)}"
                    )
                time.sleep(0.1)
            outputs = json.loads(outputs_file.read_text())
            yield Stack(endpoints=Endpoints.from_outputs(outputs), local=True)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextlib.contextmanager
def given_stack(outputs_file: Path) -> Iterator[Stack]:
    """A running stack described by an endpoints file; nothing is started or stopped."""
    yield Stack(endpoints=Endpoints.load(outputs_file), local=False)
