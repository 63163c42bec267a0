"""The polling function's asset, bundled without Docker: built for Lambda, and nothing more."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from infra.lambda_code import LAMBDA_PYTHON_VERSION, bundle

# The test and build toolchain: none of it may ship (boto3 comes with the Lambda runtime).
NOT_SHIPPED = (
    "_pytest",
    "aws_cdk",
    "boto3",
    "botocore",
    "constructs",
    "httpx",
    "jsii",
    "moto",
    "mypy",
    "pytest",
    "ruff",
    "sse_starlette",
    "uv",
    "uvicorn",
    "websockets",
)

ELF_MACHINE_AARCH64 = 183  # e_machine of an ELF object built for arm64


@pytest.fixture(scope="module")
def asset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("polling-asset")
    bundle(output, packages=("auth", "eventlog", "polling"), dependency_group="polling")
    return output


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def test_the_asset_has_the_handler_and_the_runtime_packages(asset: Path) -> None:
    assert (asset / "polling" / "handler.py").is_file()
    assert (asset / "eventlog" / "log.py").is_file()
    assert (asset / "auth" / "verifier.py").is_file()
    for package in ("fastapi", "mangum", "starlette", "pydantic", "pydantic_core", "anyio", "jwt"):
        assert (asset / package / "__init__.py").is_file(), package
    # HS256 needs no cryptography: only a JWKS deployment adds the "jwks" group.
    assert not (asset / "cryptography").exists()


def test_native_code_is_built_for_lambda(asset: Path) -> None:
    assert (asset / "pydantic_core" / "_pydantic_core.cpython-312-aarch64-linux-gnu.so").is_file()
    shared_objects = list(asset.rglob("*.so"))
    assert shared_objects
    for shared_object in shared_objects:
        assert "x86_64" not in shared_object.name, shared_object
        assert elf_machine(shared_object) == ELF_MACHINE_AARCH64, shared_object


def test_nothing_of_the_toolchain_ships(asset: Path) -> None:
    top_level = {entry.name.split("-")[0].removesuffix(".py") for entry in asset.iterdir()}

    assert not top_level & set(NOT_SHIPPED)
    assert not (asset / "bin").exists()
    # Bytecode ships only for the Lambda's Python (see precompile), never this machine's.
    bytecode = {path.name.split(".")[-2] for path in asset.rglob("*.pyc")}
    assert bytecode <= {f"cpython-{LAMBDA_PYTHON_VERSION.replace('.', '')}"}
    assert not (asset / "tests").exists()
    assert not (asset / "infra").exists()


def test_asset_size(asset: Path, tmp_path: Path) -> None:
    archive = shutil.make_archive(str(tmp_path / "asset"), "zip", asset)
    unpacked_kib = sum(path.stat().st_size for path in asset.rglob("*") if path.is_file()) // 1024
    zipped_kib = Path(archive).stat().st_size // 1024
    print(f"polling asset: {unpacked_kib} KiB unpacked, {zipped_kib} KiB zipped")
    # Lambda's own limits: 250 MB unpacked, 50 MB zipped for a direct upload.
    assert unpacked_kib < 250 * 1024
    assert zipped_kib < 50 * 1024


def test_bytecode_for_the_lambdas_python_ships_where_that_python_is(asset: Path) -> None:
    # `make test` points LAMBDA_PYTHON at a pyenv 3.12 when the machine has one (CI does).
    if not os.environ.get("LAMBDA_PYTHON"):
        pytest.skip(f"no Python {LAMBDA_PYTHON_VERSION} to compile with: set LAMBDA_PYTHON")
    tag = f"cpython-{LAMBDA_PYTHON_VERSION.replace('.', '')}"
    assert (asset / "polling" / "__pycache__" / f"app.{tag}.pyc").exists()
    assert (asset / "fastapi" / "__pycache__" / f"applications.{tag}.pyc").exists()
