"""Shared fixtures: AWS credentials that can never reach AWS, and an event log on moto."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.auth_support import TEST_SECRET

# The session-wide ``local_stack`` fixture for end-to-end and browser tests, the
# fixtures the client's test modules and the metrics tests share, and the copies of the
# project with a transport removed (synthesized once for the CDK and removal tests).
pytest_plugins = (
    "tests.e2e_support",
    "tests.client_support",
    "tests.metrics_support",
    "tests.removal_support",
)

# Set before anything imports boto3, so no test can pick up a real account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # botocore 1.44 sends DynamoDB Streams calls to an account endpoint moto does not serve.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        # Auth on, as by default, with a secret only tests use (tests/auth_support.py).
        "AUTH_SECRET": TEST_SECRET,
    }
)
for _name in (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AUTH_MODE",
    "AUTH_SECRET_ARN",
    "AUTH_JWKS_URL",
    "AUTH_AUDIENCE",
    "AUTH_ISSUER",
):
    os.environ.pop(_name, None)


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto for every AWS service the code touches, one request at a time."""
    from moto import mock_aws

    from local.moto_fidelity import atomic_requests

    with atomic_requests(), mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    from eventlog.log import dynamodb_client

    return dynamodb_client()


@pytest.fixture
def events_table(dynamodb: Any) -> str:
    from eventlog import schema

    schema.create_table(dynamodb, schema.EVENTS_TABLE, "events")
    return "events"


@pytest.fixture
def log(dynamodb: Any, events_table: str) -> Any:
    from eventlog import EventLog
    from eventlog.config import Settings

    return EventLog(settings=Settings(events_table_name=events_table), client=dynamodb)


@pytest.fixture
def cheap_transaction_rollback(aws: None) -> Iterator[None]:
    """For tests that append hundreds of events: see ``local.moto_fidelity``."""
    from local.moto_fidelity import cheap_transaction_rollback

    with cheap_transaction_rollback():
        yield


@pytest.fixture
def connections_table(dynamodb: Any) -> str:
    """The WebSocket transport's connections table on moto, from its one spec."""
    from eventlog import schema
    from websocket_api.connections import CONNECTIONS_TABLE

    schema.create_table(dynamodb, CONNECTIONS_TABLE, "connections")
    return "connections"
