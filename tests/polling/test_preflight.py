"""The deploy preflight: the account's Lambda quota against the polling reserve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.polling_api import DEFAULT_RESERVED_CONCURRENCY
from infra.preflight import check_concurrency, context_of


def lambda_with_quota(limit: int) -> Any:
    client = boto3.client("lambda", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response(
        "get_account_settings",
        {"AccountLimit": {"ConcurrentExecutions": limit}, "AccountUsage": {}},
    )
    stubber.activate()
    return client


def test_an_established_account_takes_the_default_reserve() -> None:
    assert check_concurrency({}, lambda_with_quota(1_000)) is None


def test_a_new_accounts_quota_is_refused_with_the_way_out() -> None:
    problem = check_concurrency({}, lambda_with_quota(50))
    assert problem is not None
    assert f"reserving {DEFAULT_RESERVED_CONCURRENCY}" in problem
    assert 'CONTEXT="pollingConcurrency=none"' in problem


def test_no_reserve_needs_no_quota() -> None:
    # No call is stubbed: asking the account anything would fail the test.
    client = boto3.client("lambda", region_name="us-east-1")
    Stubber(client).activate()
    assert check_concurrency({"pollingConcurrency": "none"}, client) is None


def test_context_pairs_override_cdk_json(tmp_path: Path) -> None:
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(json.dumps({"context": {"pollingConcurrency": "20", "auth": "jwks"}}))
    assert context_of(["pollingConcurrency=30"], cdk_json) == {
        "pollingConcurrency": "30",
        "auth": "jwks",
    }
    with pytest.raises(ValueError, match="key=value"):
        context_of(["pollingConcurrency"], cdk_json)


def test_a_bad_reserve_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="positive number or none"):
        check_concurrency({"pollingConcurrency": "lots"}, lambda_with_quota(1_000))
