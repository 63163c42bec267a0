"""The cold-start proxy: import time of each Lambda entry module, and the size of each asset.

A Lambda cold start is mostly the time to import the handler's module (what a
module imports at load time dominates, not package size), so each entry
module is imported in a fresh interpreter and timed, median of several runs, next
to a bare ``import boto3`` (every Python Lambda that touches AWS pays for that
sooner or later). Two variants, as in ``bench.websocket_fanout``: *compiled*,
every module from a warm bytecode cache; *from source*, the project's packages
compiled at import, as from a Lambda zip without ``__pycache__``. *As shipped* is
the one that matches the assets (``add_ratios``): they carry bytecode when
``infra.lambda_code.precompile`` found a Python 3.12, and then a cold start compiles
nothing; the targets are ratios of that figure to boto3's.

Each asset is bundled exactly as the stacks bundle it (``infra.lambda_code.bundle``,
in a subprocess so this process does not start the CDK's Node runtime), then
measured unpacked and as a deflated zip (what Lambda's 50 MB zipped / 250 MB
unpacked limits count).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.auth import ServerAuth
from bench.stack import child_environment
from bench.websocket_fanout import import_seconds


@dataclass(frozen=True, kw_only=True)
class Handler:
    key: str
    statement: str
    module: str


@dataclass(frozen=True, kw_only=True)
class Asset:
    key: str
    packages: tuple[str, ...]
    dependency_groups: tuple[str, ...]


ROOT = Path(__file__).resolve().parent.parent

BOTO3 = Handler(key="boto3", statement="import boto3", module="boto3")

HANDLERS = (
    Handler(key="polling_handler", statement="import polling.handler", module="polling.handler"),
    Handler(
        key="websocket_routes",
        statement="import websocket_api.routes",
        module="websocket_api.routes",
    ),
    Handler(
        key="websocket_fanout",
        statement="import websocket_api.fanout",
        module="websocket_api.fanout",
    ),
    Handler(
        key="websocket_authorizer",
        statement="import websocket_api.authorizer",
        module="websocket_api.authorizer",
    ),
)
"""Every Lambda entry module; one that does not exist (yet) in ``functions/`` is skipped."""

IMPORT_RATIO_LIMITS = {
    "polling_handler": 1.5,
    "websocket_routes": 1.3,
    "websocket_fanout": 1.3,
    "websocket_authorizer": 1.3,
}
"""The most each entry module's import may take, over a bare ``import boto3`` (as shipped).
The WebSocket handlers import no web framework, so they stay near boto3 itself (the
SDK they load on first use); the polling function is a FastAPI "Lambdalith" (see
``polling``) and may pay for FastAPI and pydantic, but for nothing it does not need at
its first request."""


def import_checks(cold_start: dict[str, Any]) -> dict[str, tuple[float, str, float, str]]:
    """The import targets of ``bench.run.targets``: (ratio, "<=", limit, what) per module."""
    checks = {}
    for key, row in cold_start.items():
        if key in IMPORT_RATIO_LIMITS:
            # The polling function has one entry module: its target is named for the transport.
            name = "import_polling" if key == "polling_handler" else f"import_{key}"
            checks[name] = (
                float(row["ratio_to_boto3"]),
                "<=",
                IMPORT_RATIO_LIMITS[key],
                f"{key} import time / bare import boto3",
            )
    return checks


ASSETS = (
    Asset(key="polling", packages=("auth", "eventlog", "polling"), dependency_groups=("polling",)),
    Asset(key="websocket", packages=("auth", "eventlog", "websocket_api"), dependency_groups=()),
    Asset(
        key="websocket_authorizer",
        packages=("auth", "eventlog", "websocket_api"),
        dependency_groups=("websocket",),
    ),
)
"""The Lambda assets as ``infra/polling_api.py`` and ``infra/websocket_api.py`` build them with
the default auth mode (hs256): the polling function; the WebSocket routes and fan-out (one
asset, no dependencies: boto3 comes with the runtime); the ``$connect`` authorizer (PyJWT)."""


def lambda_assets() -> tuple[Asset, ...]:
    return ASSETS


CODE = {
    "polling": ("functions/polling", "infra/polling_api.py"),
    "sse": ("functions/sse_service", "infra/sse_service.py"),
    "websocket": ("functions/websocket_api", "infra/websocket_api.py"),
}
"""What each transport adds to the shared event log: its runtime folder and its construct."""


def code_size() -> dict[str, dict[str, int]]:
    """Lines of Python per transport (runtime and infrastructure), a proxy for complexity."""
    sizes = {}
    for transport, (runtime, construct) in CODE.items():
        files = sorted((ROOT / runtime).rglob("*.py"))
        lines = sum(len(path.read_text().splitlines()) for path in [*files, ROOT / construct])
        sizes[transport] = {"python_lines": lines, "runtime_files": len(files)}
    return sizes


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _present(handler: Handler) -> bool:
    try:
        return importlib.util.find_spec(handler.module) is not None
    except ModuleNotFoundError:
        return False


def measure_imports(*, runs: int) -> dict[str, Any]:
    """Median import milliseconds per handler, compiled and from source (``add_ratios`` adds
    the ratios to boto3's)."""
    # The environment a deployed function has: a region, and auth configured (the polling
    # app reads its verifier's settings when it is built, at import).
    environment = {"AWS_DEFAULT_REGION": "us-east-1", **ServerAuth().environment}
    handlers = [h for h in (BOTO3, *HANDLERS) if h is BOTO3 or _present(h)]
    times: dict[str, dict[str, list[float]]] = {
        h.key: {"compiled_ms": [], "from_source_ms": []} for h in handlers
    }
    with _environment(environment), tempfile.TemporaryDirectory(prefix="bench-pyc-") as cache:
        for handler in handlers:
            import_seconds(handler.statement, cache=cache, shipped=False)  # fill the cache
        # Round by round, every module once per round: a slow spell of the machine then
        # weighs on every module alike instead of on the ones timed during it, and the
        # ratios are what the targets judge.
        for _ in range(runs):
            for handler in handlers:
                for column, from_source in (("compiled_ms", False), ("from_source_ms", True)):
                    seconds = import_seconds(handler.statement, cache=cache, shipped=from_source)
                    times[handler.key][column].append(seconds * 1000)
    return {
        key: {column: statistics.median(values) for column, values in columns.items()}
        for key, columns in times.items()
    }


def ships_bytecode(assets: dict[str, dict[str, float]]) -> bool:
    """Whether every asset carries bytecode (``precompile`` found a Python 3.12 for it)."""
    return all(row["pyc_files"] > 0 for row in assets.values())


def add_ratios(imports: dict[str, Any], *, bytecode: bool) -> None:
    """Add each module's import time as its asset ships it (``as_shipped_ms``), and its
    ratio to a bare boto3's: the compiled figure when the assets carry bytecode, else the
    from-source one (``/var/task`` is read-only, so nothing compiled there is kept). The
    runtime's boto3 is compiled either way."""
    column = "compiled_ms" if bytecode else "from_source_ms"
    for row in imports.values():
        row["as_shipped_ms"] = row[column]
    bare = imports[BOTO3.key]["as_shipped_ms"]
    for key, row in imports.items():
        if key != BOTO3.key:
            row["ratio_to_boto3"] = row["as_shipped_ms"] / bare


_BUNDLE = """
import json, sys
from pathlib import Path
from infra.lambda_code import bundle
for folder, packages, groups in json.loads(sys.argv[1]):
    bundle(Path(folder), packages=tuple(packages), dependency_group=tuple(groups) or None)
"""


def _sizes(folder: Path) -> dict[str, float]:
    unpacked = 0
    pyc_files = sum(1 for _ in folder.rglob("*.pyc"))
    with tempfile.TemporaryDirectory(prefix="bench-zip-") as tmp:
        archive = Path(tmp) / "asset.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    unpacked += path.stat().st_size
                    zipped.write(path, path.relative_to(folder))
        zipped_bytes = archive.stat().st_size
    return {
        "zip_kb": zipped_bytes / 1024,
        "unpacked_kb": unpacked / 1024,
        "pyc_files": pyc_files,
    }


def measure_assets() -> dict[str, dict[str, float]]:
    """Bundle every asset into a temporary folder as ``cdk synth`` would; measure it."""
    assets = lambda_assets()
    with tempfile.TemporaryDirectory(prefix="bench-assets-") as folder:
        outputs = {asset.key: Path(folder) / asset.key for asset in assets}
        for output in outputs.values():
            output.mkdir()
        jobs = [
            [str(outputs[asset.key]), list(asset.packages), list(asset.dependency_groups)]
            for asset in assets
        ]
        environment = child_environment({"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"})
        # A bytecode cache prefix would send the asset's precompiled bytecode elsewhere.
        environment.pop("PYTHONPYCACHEPREFIX", None)
        # One process for all: importing the CDK starts its Node runtime, seconds each time.
        subprocess.run(
            [sys.executable, "-c", _BUNDLE, json.dumps(jobs)],
            env=environment,
            check=True,
            capture_output=True,
        )
        return {key: _sizes(output) for key, output in outputs.items()}


if __name__ == "__main__":
    imports, assets = measure_imports(runs=1), measure_assets()
    add_ratios(imports, bytecode=ships_bytecode(assets))
    print(json.dumps({"imports": imports, "assets": assets}, indent=2))
