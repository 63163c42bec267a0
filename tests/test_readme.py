"""The README as a newcomer reads it: its generated tables current, its commands working.

Every command in the README's ``sh`` blocks is accounted for here. The client commands run
exactly as written, from a folder laid out like a checkout (``.venv`` and a ``.local/``
holding the shared local stack's endpoints file and development secret). Every ``make``
line is given to make as written with ``-n``: make must accept it and expand it to the
command the rest of the suite runs for real (the CDK CLI in test_cdk_app, ``python -m
local`` in the end-to-end tests, ``tests.smoke`` in test_smoke). Running them here would
need AWS (bootstrap, deploy), or would bind the fixed ports of a developer's ``make dev``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench import readme
from local.transports import absent_transports, present

if TYPE_CHECKING:
    from tests.e2e_support import LocalStack

pytest_plugins = ("tests.e2e_support",)

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make") or "make"

MAKE_EXPANDS_TO = {
    "make dev": "-m local",
    "make test": "-m pytest",
    "make synth": "synth --quiet",
    'make synth CONTEXT="auth=off"': "synth --quiet --context auth=off",
    "make bootstrap": "bootstrap",
    "make deploy": "deploy --all --require-approval broadening",
    "make deploy APPROVAL=never": "deploy --all --require-approval never",
    "make smoke": "-m tests.smoke .local/deployed-outputs.json",
    "make smoke OUTPUTS=.local/outputs.json": "-m tests.smoke .local/outputs.json",
}
"""Each ``make`` line of the README, and what make must expand it to."""

CLIENT_TOKEN = ".venv/bin/python -m client token --channel 'news*' --scope subscribe --ttl 1h"
SUBSCRIBE = ".venv/bin/python -m client subscribe news --transport websocket"
PUBLISH = """.venv/bin/python -m client publish news '{"hello": "world"}'"""
RUN_AS_WRITTEN = {CLIENT_TOKEN, SUBSCRIBE, PUBLISH}
PYTEST_EXAMPLE = ".venv/bin/python -m pytest tests/test_eventlog.py -k retention -q"


def readme_commands() -> list[str]:
    """Every command line of the README's ``sh`` blocks, comments stripped."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command:
                commands.append(command)
    return commands


def test_every_readme_command_is_checked_here() -> None:
    checked = set(MAKE_EXPANDS_TO) | RUN_AS_WRITTEN | {PYTEST_EXAMPLE}
    unchecked = [command for command in readme_commands() if command not in checked]
    assert not unchecked, f"README commands this test does not check: {unchecked}"


@pytest.mark.parametrize("command", sorted(MAKE_EXPANDS_TO))
def test_make_accepts_each_readme_line_as_written(command: str) -> None:
    assert command in readme_commands(), f"no longer in the README: {command}"
    result = subprocess.run(
        [MAKE, "-n", "--no-print-directory", *shlex.split(command)[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert MAKE_EXPANDS_TO[command] in result.stdout, result.stdout


def test_the_readme_pytest_example_selects_tests() -> None:
    args = shlex.split(PYTEST_EXAMPLE)[1:]
    result = subprocess.run(
        [sys.executable, *args, "--collect-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert re.search(r"\b[1-9]\d* tests? collected\b|[1-9]\d*/\d+ tests collected", result.stdout)


@pytest.fixture
def checkout(tmp_path: Path, local_stack: LocalStack) -> Path:
    """A checkout as the README assumes one, its ``.local/`` the running stack's: every
    top-level entry of this one linked in, except its own ``.local/``."""
    for entry in ROOT.iterdir():
        if entry.name not in (".local", ".git"):
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / ".local").mkdir()
    shutil.copy(local_stack.outputs_file, tmp_path / ".local" / "outputs.json")
    shutil.copy(local_stack.outputs_file.parent / "dev-secret", tmp_path / ".local" / "dev-secret")
    return tmp_path


def _shell(command: str, cwd: Path, *, output: Path) -> subprocess.Popen[bytes]:
    """``command`` through a shell, as typed; its output (both streams) into ``output``."""
    # Not the suite's PYTHONPATH (make test sets one): a user's shell has none.
    environment = {k: v for k, v in os.environ.items() if k not in ("E2E_TOKEN", "PYTHONPATH")}
    with output.open("wb") as sink:
        return subprocess.Popen(  # noqa: S602 (the README's own command, as a user types it)
            command,
            shell=True,
            cwd=cwd,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, which Ctrl-C goes to
        )


def _wait_for(path: Path, text: str, *, within: float) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        seen = path.read_text(errors="replace")
        if text in seen:
            return seen
        time.sleep(0.1)
    return path.read_text(errors="replace")


def test_the_readme_token_command_prints_a_token(checkout: Path) -> None:
    assert CLIENT_TOKEN in readme_commands()
    process = _shell(CLIENT_TOKEN, checkout, output=checkout / "token.out")
    assert process.wait(timeout=60) == 0, (checkout / "token.out").read_text()
    token = (checkout / "token.out").read_text().split()[-1]
    assert token.count(".") == 2, f"no token printed: {token!r}"


@pytest.mark.skipif(not present("websocket"), reason="the README's example uses WebSocket")
def test_the_readme_subscribe_and_publish_commands_deliver(checkout: Path) -> None:
    assert SUBSCRIBE in readme_commands()
    assert PUBLISH in readme_commands()
    subscribed = checkout / "subscribe.out"
    subscriber = _shell(SUBSCRIBE, checkout, output=subscribed)
    try:
        # The subscriber prints nothing until an event comes, and takes only events
        # published after it subscribed: publish until one of them arrives.
        for attempt in range(10):
            published = checkout / f"publish-{attempt}.out"
            assert _shell(PUBLISH, checkout, output=published).wait(timeout=60) == 0, (
                published.read_text()
            )
            event = json.loads(published.read_text().strip().splitlines()[-1])
            assert event["data"] == {"hello": "world"}
            line = json.dumps(event, separators=(",", ":"))
            if line in _wait_for(subscribed, line, within=3):
                break
        else:
            pytest.fail(f"the subscriber printed none of 10 events: {subscribed.read_text()}")
    finally:
        os.killpg(subscriber.pid, signal.SIGINT)  # Ctrl-C, to the shell and the client
        assert subscriber.wait(timeout=10) is not None


ALL_THREE = pytest.mark.skipif(
    bool(absent_transports()),
    reason=f"the README's tables compare all three transports; removed: {absent_transports()}",
)


@ALL_THREE
def test_the_readme_generated_tables_are_current() -> None:
    assert readme.stale(readme.README.read_text()) == [], "run: make readme"


@ALL_THREE
def test_a_changed_line_count_makes_the_comparison_stale() -> None:
    text = readme.README.read_text()
    changed = re.sub(
        r"\| ([\d,]+) lines; one stateless function", "| 1 lines; one stateless function", text
    )
    assert changed != text
    assert readme.stale(changed) == ["comparison"]


# --- commands quoted in the prose -------------------------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\|")


def quoted_commands(prefix: str) -> list[str]:
    """Every backticked command in the docs that starts with ``prefix``, placeholders out."""
    found = set()
    for doc in DOCS:
        for span in re.findall(r"`([^`\n]+)`", doc.read_text()):
            command = span.removeprefix(".venv/bin/")
            if command.startswith(prefix) and not PLACEHOLDER.search(command):
                found.add(command)
    return sorted(found)


MAKE_LINES = quoted_commands("make ")


@pytest.mark.parametrize("command", MAKE_LINES)
def test_every_quoted_make_command_is_one_make_accepts(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = shlex.split(command)[1:]
    result = subprocess.run(
        [MAKE, "-n", "--no-print-directory", *words],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    makefile = (ROOT / "Makefile").read_text()
    for name, value in (word.split("=", 1) for word in words if "=" in word):
        if name.startswith("LOCAL_"):
            # Not the Makefile's: make hands it to `python -m local` in the environment.
            from local.__main__ import parse_args

            default = parse_args([])
            monkeypatch.setenv(name, value)
            assert parse_args([]) != default, f"{name} changes nothing in python -m local"
        else:
            assert f"$({name})" in makefile, f"the Makefile has no variable {name}"


@pytest.mark.parametrize("command", quoted_commands("python -m local"))
def test_every_quoted_local_command_parses(command: str) -> None:
    from local.__main__ import parse_args

    arguments = shlex.split(command)[3:]
    if arguments == ["--help"]:
        with pytest.raises(SystemExit) as exited:
            parse_args(arguments)
        assert exited.value.code == 0
    else:
        parse_args(arguments)  # argparse exits on anything it refuses


@pytest.mark.parametrize("command", quoted_commands("python -m client "))
def test_every_quoted_client_command_parses(command: str) -> None:
    from client.cli import build_parser

    build_parser().parse_args(shlex.split(command)[3:])


def test_the_prose_quotes_commands_these_tests_check() -> None:
    assert "make dev LOCAL_POLLING_PORT=9001" in MAKE_LINES
    assert "python -m local --polling-port 9001" in quoted_commands("python -m local")
