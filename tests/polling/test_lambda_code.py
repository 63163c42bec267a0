"""The polling function's asset, bundled without Docker: built for Lambda, and nothing more."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from infra.lambda_code import (
    LAMBDA_PYTHON_VERSION,
    LAMBDA_RUNTIME,
    bundle,
    bundling_options,
    export_requirements,
    lambda_python,
    precompile,
)

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
    if lambda_python() is None:
        # CI's machines have one: there the missing bytecode is a failure, never a skip.
        assert not os.environ.get("CI"), f"CI must have a Python {LAMBDA_PYTHON_VERSION}"
        pytest.skip(f"no Python {LAMBDA_PYTHON_VERSION} here (see infra.lambda_code)")
    tag = f"cpython-{LAMBDA_PYTHON_VERSION.replace('.', '')}"
    assert (asset / "polling" / "__pycache__" / f"app.{tag}.pyc").exists()
    assert (asset / "fastapi" / "__pycache__" / f"applications.{tag}.pyc").exists()


def test_exported_requirements_carry_no_colour_whatever_force_color_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CDK CLI sets FORCE_COLOR=0 for the app when its output is not a terminal.
    monkeypatch.setenv("FORCE_COLOR", "0")
    requirements = export_requirements("polling")
    assert "\x1b[" not in requirements
    assert "fastapi==" in requirements


def test_the_docker_fallback_builds_for_arm64_and_compiles_bytecode() -> None:
    options = bundling_options(packages=("auth", "polling"), dependency_group="polling")
    assert options.platform == "linux/arm64"
    assert options.image.image == LAMBDA_RUNTIME.bundling_image.image
    script = options.command[-1] if options.command else ""
    assert "--only-binary=:all:" in script
    assert "--color never" in script
    assert script.endswith("--invalidation-mode unchecked-hash /asset-output")


def test_a_named_lambda_python_is_never_silently_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lambda_python.cache_clear()
    monkeypatch.setenv("LAMBDA_PYTHON", sys.executable)  # this interpreter is not 3.12
    try:
        assert lambda_python() is None
    finally:
        lambda_python.cache_clear()


def test_without_the_lambdas_python_the_asset_warns_or_fails_as_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAMBDA_PYTHON", str(tmp_path / "no-such-python"))
    lambda_python.cache_clear()
    try:
        monkeypatch.delenv("LAMBDA_BYTECODE", raising=False)
        assert precompile(tmp_path) is False
        assert f"no Python {LAMBDA_PYTHON_VERSION} found" in capsys.readouterr().err
        monkeypatch.setenv("LAMBDA_BYTECODE", "required")
        with pytest.raises(RuntimeError, match=f"no Python {LAMBDA_PYTHON_VERSION} found"):
            precompile(tmp_path)
    finally:
        lambda_python.cache_clear()
