"""``make smoke`` against the local stack, as the README runs it against a deployment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventlog import endpoints
from tests.smoke import smoke_token

if TYPE_CHECKING:
    from tests.e2e_support import LocalStack

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make") or "make"

# The whole end-to-end suite runs again in a child pytest.
pytestmark = pytest.mark.timeout(900)


def test_make_smoke_passes_against_the_running_local_stack(local_stack: LocalStack) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "E2E_TOKEN"}
    result = subprocess.run(
        [MAKE, "--no-print-directory", "smoke", f"OUTPUTS={local_stack.outputs_file}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=840,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert " failed" not in result.stdout


def test_make_smoke_without_an_endpoints_file_says_where_one_comes_from(tmp_path: Path) -> None:
    result = subprocess.run(
        [MAKE, "--no-print-directory", "smoke", f"OUTPUTS={tmp_path / 'missing.json'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "make deploy" in result.stderr


def test_a_deployments_token_is_minted_from_its_secret(aws: None) -> None:
    import boto3

    from tests.auth_support import TEST_SECRET, verifier

    arn = boto3.client("secretsmanager").create_secret(Name="s", SecretString=TEST_SECRET)["ARN"]
    outputs = {endpoints.AUTH_STACK: {endpoints.AUTH_SECRET_ARN: arn}}
    token = smoke_token(outputs)
    assert token is not None
    claims = verifier().verify(token)
    assert claims.subject == "smoke"
    assert claims.allows("any-channel", "publish")
    assert claims.allows("any-channel", "subscribe")
    assert smoke_token({endpoints.EDGE_STACK: {}}) is None
