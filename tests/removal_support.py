"""Copies of the project with one transport removed, as the README says, each synthesized once.

``REMOVALS`` is the README's list ("Make it yours"), in code: the lines of ``app.py`` that
name the transport's stack (its import and its entry), and its paths. ``copy_without``
copies the checkout's files (``git ls-files``, with files not yet committed) to a folder
and removes exactly those; the copy links this checkout's ``.venv`` and ``node_modules``
instead of installing them again (the venv finds the code beside itself, so the copy runs
its own). ``removed_copies``, a session fixture, makes the three copies and runs the real
CDK CLI's synth in each, two at a time: ``tests/test_transport_removal.py`` starts the
local stack in them, and ``tests/test_cdk_app.py`` checks their templates as its
"without-X" variants, so each variant is synthesized once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CDK = Path("node_modules") / ".bin" / "cdk"
SYNTH_TIMEOUT_SECONDS = 600


@dataclass(frozen=True, kw_only=True)
class Removal:
    transport: str
    stack: str
    """The stack's class: every line of ``app.py`` that names it is deleted (two of them)."""
    paths: tuple[str, ...]


REMOVALS: dict[str, Removal] = {
    "polling": Removal(
        transport="polling",
        stack="PollingStack",
        paths=("infra/polling_api.py", "functions/polling", "tests/polling"),
    ),
    "websocket": Removal(
        transport="websocket",
        stack="WebSocketStack",
        paths=("infra/websocket_api.py", "functions/websocket_api", "tests/websocket"),
    ),
    "sse": Removal(
        transport="sse",
        stack="SseStack",
        paths=(
            "infra/sse_service.py",
            "infra/sse_broker.py",
            "functions/sse_service",
            "tests/sse",
        ),
    ),
}


@dataclass(frozen=True, kw_only=True)
class Synth:
    outdir: Path
    result: subprocess.CompletedProcess[str]


@dataclass(frozen=True, kw_only=True)
class RemovedCopy:
    removal: Removal
    root: Path
    synth: Synth

    @property
    def python(self) -> Path:
        """The copy's interpreter: the linked venv, which puts the copy's code on the path."""
        return self.root / ".venv" / "bin" / "python"


def checkout_files() -> list[str]:
    git = shutil.which("git")
    assert git, "the removal test copies the checkout's files as git lists them"
    listed = subprocess.run(
        [git, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    # A file deleted but not yet committed is still listed: it is not part of the checkout.
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def copy_without(removal: Removal, destination: Path) -> Path:
    """The checkout's files in ``destination``, less the transport; ``destination``."""

    def removed(name: str) -> bool:
        return any(name == path or name.startswith(f"{path}/") for path in removal.paths)

    for name in checkout_files():
        if not removed(name):
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    for path in removal.paths:
        assert not (destination / path).exists(), f"{path} is not a path of the checkout"
    app = destination / "app.py"
    lines = app.read_text().splitlines(keepends=True)
    kept = [line for line in lines if removal.stack not in line]
    assert len(kept) == len(lines) - 2, f"app.py should name {removal.stack} in two lines"
    app.write_text("".join(kept))
    for linked in (".venv", "node_modules"):
        (destination / linked).symlink_to(ROOT / linked, target_is_directory=True)
    return destination


def synthesize(root: Path, outdir: Path, *, context: Sequence[str] = ()) -> Synth:
    """The pinned CDK CLI's synth of ``root``'s app, from a non-interactive shell."""
    command = [str(root / CDK), "synth", "--quiet", "--output", str(outdir)]
    for pair in context:
        command += ["--context", pair]
    environment = {
        **os.environ,
        "PYTHONPATH": f"{root / 'functions'}{os.pathsep}{root}",
        "CI": "true",  # the CLI's non-interactive mode, as in CI and `make deploy | tee`
    }
    result = subprocess.run(
        command,
        cwd=root,
        stdin=subprocess.DEVNULL,  # no terminal: what CI and a piped deploy see
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        timeout=SYNTH_TIMEOUT_SECONDS,
        check=False,
    )
    return Synth(outdir=outdir, result=result)


def _copy_and_synthesize(removal: Removal, folder: Path) -> RemovedCopy:
    root = copy_without(removal, folder / "project")
    return RemovedCopy(removal=removal, root=root, synth=synthesize(root, root / "cdk.out"))


@pytest.fixture(scope="session")
def removed_copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RemovedCopy]:
    """One copy per transport, without it, synthesized: made once, shared by the tests."""
    assert (ROOT / CDK).exists(), "the pinned CDK CLI is missing: `make test` installs it"
    folders = {name: tmp_path_factory.mktemp(f"without-{name}") for name in REMOVALS}
    # Two at a time: each is a node process and a Python one.
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(lambda name: _copy_and_synthesize(REMOVALS[name], folders[name]), REMOVALS)
        return {copy.removal.transport: copy for copy in done}
