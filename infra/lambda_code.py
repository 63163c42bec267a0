"""Lambda assets built without Docker.

A function's asset is its runtime packages from ``functions/`` plus, if it has
one, its dependency group from ``uv.lock`` installed for the Lambda's platform
(arm64, Python 3.12). Bundling runs locally with uv, which cross-installs
manylinux wheels for another architecture and Python version; if uv cannot be
found, CDK falls back to the same steps in the Lambda build image under Docker.

Lambdas run on arm64 (Graviton): about 20% cheaper per GB-second than x86_64
for the same memory, and every dependency here ships aarch64 wheels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
LAMBDA_PYTHON_VERSION = "3.12"
LAMBDA_PLATFORM = "aarch64-manylinux2014"
UV_VERSION = "0.13.9"

# Never copied from the source tree: local caches (``precompile`` makes the Lambda's own),
# and the container build files of the SSE service.
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "Dockerfile", "requirements.txt")


def _uv() -> str | None:
    beside_python = Path(sys.executable).parent / "uv"
    return str(beside_python) if beside_python.exists() else shutil.which("uv")


DependencyGroups = str | tuple[str, ...] | None
"""One dependency group of pyproject.toml, several (installed together), or none."""


def _groups(dependency_group: DependencyGroups) -> tuple[str, ...]:
    if dependency_group is None:
        return ()
    return (dependency_group,) if isinstance(dependency_group, str) else dependency_group


def _only_groups(dependency_group: DependencyGroups) -> list[str]:
    return [flag for group in _groups(dependency_group) for flag in ("--only-group", group)]


def export_requirements(dependency_group: DependencyGroups) -> str:
    """The locked, hashed requirements of one or more dependency groups."""
    uv = _uv()
    if uv is None:
        raise RuntimeError("uv is not installed: run `make test` or `make synth` once")
    return subprocess.run(
        [uv, "export", "--frozen", *_only_groups(dependency_group), "--no-emit-project",
         "--no-header", "--quiet"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def bundle(
    output_dir: Path, *, packages: tuple[str, ...], dependency_group: DependencyGroups
) -> None:
    """Write a Lambda asset: dependencies for the Lambda's platform, then the packages."""
    uv = _uv()
    if uv is None:
        raise RuntimeError("uv is not installed")
    if _groups(dependency_group):
        with tempfile.TemporaryDirectory() as tmp:
            requirements = Path(tmp) / "requirements.txt"
            requirements.write_text(export_requirements(dependency_group))
            subprocess.run(
                [uv, "pip", "install", "--quiet", "--target", str(output_dir),
                 "--python-platform", LAMBDA_PLATFORM, "--python-version", LAMBDA_PYTHON_VERSION,
                 "--only-binary", ":all:", "--requirement", str(requirements)],
                check=True,
            )  # fmt: skip
        # uv's own bookkeeping and console scripts are of no use inside a Lambda.
        shutil.rmtree(output_dir / "bin", ignore_errors=True)
        (output_dir / ".lock").unlink(missing_ok=True)
    for package in packages:
        shutil.copytree(FUNCTIONS_DIR / package, output_dir / package, ignore=_IGNORE)
    precompile(output_dir)


def precompile(output_dir: Path) -> bool:
    """Ship bytecode for the Lambda's Python, when that interpreter is on this machine.

    ``/var/task`` is read-only, so a function without ``__pycache__`` compiles every
    module it imports on every cold start: for the polling function that roughly
    doubles its import time. ``unchecked-hash`` bytecode does not depend on file
    times, so the asset (hashed by content) is the same on every machine that has
    the interpreter; where it is missing the asset is still correct, only slower
    to start. ``LAMBDA_PYTHON`` names the interpreter if it is not on the PATH.
    """
    python = os.environ.get("LAMBDA_PYTHON") or shutil.which(f"python{LAMBDA_PYTHON_VERSION}")
    if python is None:
        return False
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if version.returncode != 0 or version.stdout.strip() != LAMBDA_PYTHON_VERSION:
        return False  # e.g. a version manager's shim for an interpreter that is not active
    # With PYTHONPYCACHEPREFIX set, compileall writes to that cache, not into the asset.
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
         str(output_dir)],
        check=True, env=environment,
    )  # fmt: skip
    return True


@jsii.implements(ILocalBundling)
class _LocalUvBundling:
    def __init__(self, *, packages: tuple[str, ...], dependency_group: DependencyGroups) -> None:
        self._packages = packages
        self._dependency_group = dependency_group

    def try_bundle(self, output_dir: str, *_options: Any, **_bundling_options: Any) -> bool:
        if _uv() is None:
            return False  # CDK falls back to Docker
        bundle(Path(output_dir), packages=self._packages, dependency_group=self._dependency_group)
        return True


def function_code(
    *, packages: tuple[str, ...], dependency_group: DependencyGroups = None
) -> lambda_.Code:
    """The asset of a function made of ``packages`` (folders of ``functions/``)."""
    copy = " && ".join(f"cp -r /asset-input/functions/{p} /asset-output/" for p in packages)
    install = (
        f"pip install -q uv=={UV_VERSION} && uv export --frozen "
        f"{' '.join(_only_groups(dependency_group))} "
        "--no-emit-project > /tmp/requirements.txt && "
        "pip install -q -r /tmp/requirements.txt -t /asset-output && "
        if _groups(dependency_group)
        else ""
    )
    return lambda_.Code.from_asset(
        str(ROOT),
        # The hash of what is shipped, so a change elsewhere in the repo does not redeploy.
        asset_hash_type=AssetHashType.OUTPUT,
        exclude=[".venv", "cdk.out", ".local", "node_modules", ".git", "tests"],
        bundling=BundlingOptions(
            image=LAMBDA_RUNTIME.bundling_image,
            command=["bash", "-c", install + copy],
            local=_LocalUvBundling(packages=packages, dependency_group=dependency_group),
        ),
    )
