"""Lambda assets built without Docker.

A function's asset is its runtime packages from ``functions/`` plus, if it has
one, its dependency group from ``uv.lock`` installed for the Lambda's platform
(arm64, Python 3.12). Bundling runs locally with uv, which cross-installs
manylinux wheels for another architecture and Python version; if uv cannot be
found, CDK falls back to the same steps in the Lambda build image under Docker,
pulled for arm64 whatever the host (an x86 host needs QEMU emulation for that).

Lambdas run on arm64 (Graviton): about 20% cheaper per GB-second than x86_64
for the same memory, and every dependency here ships aarch64 wheels.

Every uv call says ``--color never``: the CDK CLI sets ``FORCE_COLOR=0`` for the app
when its own output is not a terminal (CI, ``| tee``), and uv takes any
``FORCE_COLOR`` as "colour on", which wrote ANSI codes into the exported requirements.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.app_rules import LAMBDA_BASIC_EXECUTION, acknowledge

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
LAMBDA_PYTHON_VERSION = "3.12"
LAMBDA_PLATFORM = "aarch64-manylinux2014"
UV_VERSION = "0.13.9"
NO_COLOR = ("--color", "never")

LOGGING_FORMAT = lambda_.LoggingFormat.JSON
"""Every function logs JSON: the runtime adds ``requestId`` and each ``extra=`` field to a
line (``eventlog.structured_logs``), so Logs Insights can filter on them without parsing."""
APPLICATION_LOG_LEVEL = lambda_.ApplicationLogLevel.INFO
"""One line per request or batch at INFO; DEBUG lines are dropped by Lambda itself."""

LAMBDA_PYTHON_ENV = "LAMBDA_PYTHON"
"""Names the Python 3.12 interpreter to compile bytecode with, when discovery cannot find it."""
BYTECODE_ENV = "LAMBDA_BYTECODE"
"""``required`` makes a missing Python 3.12 an error instead of a warning (CI sets it)."""

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
        [uv, "export", *NO_COLOR, "--frozen", *_only_groups(dependency_group),
         "--no-emit-project", "--no-header", "--quiet"],
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
                [uv, "pip", "install", *NO_COLOR, "--quiet", "--target", str(output_dir),
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


def _python_version(python: str) -> str | None:
    try:
        found = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    except OSError:
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def _candidates() -> Iterator[str]:
    explicit = os.environ.get(LAMBDA_PYTHON_ENV)
    if explicit:
        yield explicit
        return  # a named interpreter that is wrong must not be silently replaced
    on_path = shutil.which(f"python{LAMBDA_PYTHON_VERSION}")
    if on_path:
        yield on_path
    uv = _uv()
    if uv:
        found = subprocess.run(
            [uv, "python", "find", *NO_COLOR, "--no-config", LAMBDA_PYTHON_VERSION],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if found.returncode == 0 and found.stdout.strip():
            yield found.stdout.strip()
    # pyenv keeps every version under its root, though only the active one is on the PATH.
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installs = sorted(
        pyenv_root.glob(f"versions/{LAMBDA_PYTHON_VERSION}.*/bin/python{LAMBDA_PYTHON_VERSION}"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    yield from (str(path) for path in reversed(installs))


@functools.cache
def lambda_python() -> str | None:
    """The Python 3.12 that compiles the assets' bytecode, found the same way on every machine.

    In order: ``LAMBDA_PYTHON`` (and only it, when set), ``python3.12`` on the PATH,
    ``uv python find 3.12``, the newest pyenv 3.12. None when there is none.
    """
    for candidate in _candidates():
        if _python_version(candidate) == LAMBDA_PYTHON_VERSION:
            return candidate
    return None


_MISSING_PYTHON = (
    f"no Python {LAMBDA_PYTHON_VERSION} found: Lambda assets ship without bytecode, so every "
    "cold start compiles what it imports (the polling function's imports take about twice as "
    "long), and asset hashes differ from a machine that has one, which redeploys functions "
    f"needlessly. Install Python {LAMBDA_PYTHON_VERSION} (`uv python install "
    f"{LAMBDA_PYTHON_VERSION}`, pyenv, or your package manager) or name it with "
    f"{LAMBDA_PYTHON_ENV}=/path/to/python{LAMBDA_PYTHON_VERSION}."
)


@functools.cache
def _warn_missing_python() -> None:
    # Once per synth, on stderr, which the CDK CLI shows: the asset is still correct.
    print(f"warning: {_MISSING_PYTHON}", file=sys.stderr)


def precompile(output_dir: Path) -> bool:
    """Ship bytecode for the Lambda's Python, found by ``lambda_python``.

    ``/var/task`` is read-only, so a function without ``__pycache__`` compiles every
    module it imports on every cold start: for the polling function that roughly
    doubles its import time. ``unchecked-hash`` bytecode does not depend on file
    times, so the asset (hashed by content) is the same on every machine that has
    the interpreter. Where it is missing the asset is still correct, only slower to
    start: a warning says so, or, with ``LAMBDA_BYTECODE=required``, an error.
    """
    python = lambda_python()
    if python is None:
        if os.environ.get(BYTECODE_ENV) == "required":
            raise RuntimeError(_MISSING_PYTHON)
        _warn_missing_python()
        return False
    # With PYTHONPYCACHEPREFIX set, compileall writes to that cache, not into the asset.
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    subprocess.run([python, *_COMPILE, str(output_dir)], check=True, env=environment)
    return True


_COMPILE = ("-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash")


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


def acknowledge_runtime(function: lambda_.Function) -> None:
    """The cdk-nag findings every function here shares, acknowledged with the reason."""
    acknowledge(
        function,
        "AwsSolutions-L1",
        f"Python {LAMBDA_PYTHON_VERSION} on purpose: the asset ships bytecode compiled by a "
        "matching interpreter (precompile); LAMBDA_RUNTIME and LAMBDA_PYTHON_VERSION move "
        "together.",
    )
    acknowledge(function, LAMBDA_BASIC_EXECUTION, "Lambda's own policy for its logs, no more.")


def bundling_options(
    *, packages: tuple[str, ...], dependency_group: DependencyGroups = None
) -> BundlingOptions:
    """Local bundling with uv; if uv is missing, the same steps in Docker, for arm64."""
    copy = " && ".join(f"cp -r /asset-input/functions/{p} /asset-output/" for p in packages)
    install = (
        f"pip install -q uv=={UV_VERSION} && uv export {' '.join(NO_COLOR)} --frozen "
        f"{' '.join(_only_groups(dependency_group))} "
        "--no-emit-project > /tmp/requirements.txt && "
        "pip install -q --only-binary=:all: -r /tmp/requirements.txt -t /asset-output && "
        if _groups(dependency_group)
        else ""
    )
    # Caches copied from the source tree and pip's timestamped bytecode go; then the
    # image's Python 3.12 compiles the same unchecked-hash bytecode as precompile.
    clean = " && find /asset-output -name __pycache__ -prune -exec rm -rf {} +"
    compile_bytecode = f" && python {' '.join(_COMPILE)} /asset-output"
    return BundlingOptions(
        image=LAMBDA_RUNTIME.bundling_image,
        # Pulled for arm64 whatever the host: pip then installs aarch64 wheels natively.
        platform="linux/arm64",
        command=["bash", "-c", install + copy + clean + compile_bytecode],
        local=_LocalUvBundling(packages=packages, dependency_group=dependency_group),
    )


def function_code(
    *, packages: tuple[str, ...], dependency_group: DependencyGroups = None
) -> lambda_.Code:
    """The asset of a function made of ``packages`` (folders of ``functions/``)."""
    return lambda_.Code.from_asset(
        str(ROOT),
        # The hash of what is shipped, so a change elsewhere in the repo does not redeploy.
        asset_hash_type=AssetHashType.OUTPUT,
        exclude=[".venv", "cdk.out", ".local", "node_modules", ".git", "tests"],
        bundling=bundling_options(packages=packages, dependency_group=dependency_group),
    )
