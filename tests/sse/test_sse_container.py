"""The SSE container without Docker: requirements from the lock, a Dockerfile fit for its context.

No Docker engine here, so the image is not built; what it installs is the ``sse``
dependency group that the tests' environment also has (checked below, version by
version), and the tests run the same app with the same server (uvicorn, uvloop,
httptools; ``python -m sse_service`` in tests/sse/test_sse_shutdown.py).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from importlib.metadata import version
from pathlib import Path

from sse_service.healthcheck import COMMAND as HEALTH_COMMAND
from sse_service.settings import SSE_PORT

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = ROOT / "functions"  # the build context
DOCKERFILE = CONTEXT / "sse_service" / "Dockerfile"
REQUIREMENTS = CONTEXT / "sse_service" / "requirements.txt"
EXPORT = "uv export --frozen --only-group sse --no-emit-project"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_requirements_are_exported_from_the_lock() -> None:
    uv = ROOT / ".venv" / "bin" / "uv"
    exported = subprocess.run(
        [str(uv), *shlex.split(EXPORT)[1:]], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    assert REQUIREMENTS.read_text() == exported, f"regenerate it: {EXPORT} > {REQUIREMENTS}"


def test_the_tested_environment_has_the_image_s_versions() -> None:
    from packaging.markers import Marker

    pins = re.findall(
        r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?: ; ([^\\]+))?", REQUIREMENTS.read_text(), re.MULTILINE
    )
    assert len(pins) > 10
    for name, pinned, marker in pins:
        if marker and not Marker(marker.strip()).evaluate():
            continue  # e.g. a backport the image's Python needs and this one does not
        assert version(name) == pinned, name


def test_the_dockerfile_copies_from_its_context_and_runs_as_non_root() -> None:
    steps = instructions()
    base = next(argument for kind, argument in steps if kind == "FROM")
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", base)
    copies = [argument.split() for kind, argument in steps if kind == "COPY"]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            assert (CONTEXT / source).exists(), f"COPY {source}: not in the build context"
    users = [(index, argument) for index, (kind, argument) in enumerate(steps) if kind == "USER"]
    runs = [index for index, (kind, _) in enumerate(steps) if kind == "RUN"]
    last_user_at, user = users[-1]
    assert user not in {"root", "0"}
    assert last_user_at > runs[-1]  # nothing after the last USER runs as root


def test_the_dockerfile_runs_what_the_tests_run() -> None:
    steps = dict(instructions())
    assert json.loads(steps["CMD"]) == ["python", "-m", "sse_service"]
    health = steps["HEALTHCHECK"]
    assert json.loads(health[health.index("CMD") + len("CMD") :]) == HEALTH_COMMAND
    assert steps["EXPOSE"] == str(SSE_PORT)
    assert f"PORT={SSE_PORT}" in steps["ENV"].split()
    installs = [argument for kind, argument in instructions() if "pip install" in argument]
    assert installs
    assert all("--require-hashes" in argument for argument in installs)
