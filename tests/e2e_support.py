"""The local stack for end-to-end tests: ``python -m local`` as a subprocess.

A subprocess, not the stack inside the test process, for two reasons: it is exactly
what ``make dev`` runs (same entry point, same environment handling, same Ctrl-C
path), and the stack points every boto3 client of its process at its own DynamoDB,
which must not leak into the tests that use in-process moto.

Two stacks at most, each started once per session and shared: ``local_stack`` runs
orderly, as ``make dev`` does, and ``disorderly_stack`` under ``--disorder`` (the
kinds of disorder AWS is allowed, ``local.disorder``). A test that takes the ``mode``
fixture runs once in each; ``stack_for(request, mode)`` is that mode's stack. The
seed is ``E2E_DISORDER_SEED`` or a fresh one, printed at the end of the run so a
failure under disorder can be replayed.

Every port is 0 (any free one), so tests run beside a developer's ``make dev``; the
stack writes the endpoints file once every server answers, and the fixture waits for
that file. A test module uses it with ``pytest_plugins = ("tests.e2e_support",)`` (and
imports nothing from here at module level: pytest must be the first to import a plugin).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventlog.endpoints import Endpoints

ROOT = Path(__file__).resolve().parent.parent

START_TIMEOUT_SECONDS = 60.0
"""How long the stack may take to write its endpoints file (moto and five servers start)."""

STOP_TIMEOUT_SECONDS = 10.0
"""How long the stack may take to stop after Ctrl-C before it is killed."""

MODES = ("orderly", "disorder")
"""The ``mode`` fixture's params: the stack as ``make dev`` runs it, and under disorder."""

DISORDER_SEED_ENV = "E2E_DISORDER_SEED"

_disorder_seeds: list[int] = []
"""The seed of this session's disorderly stack, once it started."""


@dataclass(frozen=True, kw_only=True)
class LocalStack:
    """A running local stack: its endpoints file, parsed both ways."""

    outputs_file: Path
    outputs: dict[str, dict[str, str]]
    endpoints: Endpoints
    log_file: Path
    """Everything the stack printed: its logs, which must never show a token."""


def _tail(path: Path, *, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a developer stops ``make dev``; killed if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def launched(
    folder: Path,
    *,
    disorder_seed: int | None = None,
    extra_args: Sequence[str] = (),
    root: Path = ROOT,
    python: Path | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], LocalStack]]:
    """``python -m local`` of the project at ``root``, with its files in ``folder``, running
    once its endpoints file is written. ``python``: the interpreter (default: this one)."""
    outputs_file = folder / "outputs.json"
    log_file = folder / "stack.log"
    ports = [
        f"--{name}-port=0"
        for name in ("demo", "polling", "sse", "websocket", "management", "dynamodb", "broker")
    ]
    env = {
        # Only the option above decides: a developer's LOCAL_DISORDER must not leak in.
        **{k: v for k, v in os.environ.items() if k not in ("LOCAL_DISORDER",)},
        "PYTHONPATH": os.pathsep.join([str(root / "functions"), str(root)]),
        "PYTHONUNBUFFERED": "1",
    }
    # Output goes to a file, not a pipe: a pipe nobody reads fills up and blocks the stack.
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(python or sys.executable),
                "-m",
                "local",
                *ports,
                "--outputs",
                str(outputs_file),
                # Auth on, as `make dev` runs it, with a secret of its own.
                "--dev-secret-file",
                str(folder / "dev-secret"),
                *([] if disorder_seed is None else ["--disorder", str(disorder_seed)]),
                *extra_args,
            ],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not outputs_file.exists():
            if process.poll() is not None:
                pytest.fail(
                    f"`python -m local` exited with code {process.returncode} before writing "
                    f"{outputs_file}; its output:\n{_tail(log_file)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"`python -m local` wrote no endpoints file within "
                    f"{START_TIMEOUT_SECONDS:.0f} s; its output:\n{_tail(log_file)}"
                )
            time.sleep(0.1)
        # The stack writes the file atomically (rename), so it is complete once it exists.
        outputs = json.loads(outputs_file.read_text())
        yield (
            process,
            LocalStack(
                outputs_file=outputs_file,
                outputs=outputs,
                endpoints=Endpoints.from_outputs(outputs),
                log_file=log_file,
            ),
        )
    finally:
        stop(process)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole project on 127.0.0.1, started once per test session."""
    with launched(tmp_path_factory.mktemp("local-stack")) as (_process, stack):
        yield stack


@pytest.fixture(scope="session")
def disorderly_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The same under ``--disorder``, started once per test session when a test needs it."""
    seed = int(os.environ.get(DISORDER_SEED_ENV) or secrets.randbelow(1_000_000))
    _disorder_seeds.append(seed)
    folder = tmp_path_factory.mktemp("disorderly-stack")
    with launched(folder, disorder_seed=seed) as (_process, stack):
        yield stack


@pytest.fixture(scope="session", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Run the test against each mode's stack: orderly, and under disorder."""
    return str(request.param)


def stack_for(request: pytest.FixtureRequest, mode: str) -> LocalStack:
    """The running stack of ``mode``, started on first use."""
    name = "local_stack" if mode == "orderly" else "disorderly_stack"
    stack: LocalStack = request.getfixturevalue(name)
    return stack


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for seed in _disorder_seeds:
        terminalreporter.write_line(
            f"local stack under disorder: seed {seed} "
            f"(replay: {DISORDER_SEED_ENV}={seed} .venv/bin/python -m pytest ...)"
        )
