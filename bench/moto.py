"""A DynamoDB for the fan-out measurements: moto in its own process, as the local stack runs it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

BENCH_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # botocore sends stream calls to an account-based host moto does not serve.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}
"""Credentials that can never reach AWS, for this process and every server it starts."""


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start the local stack's DynamoDB (``local.dynamodb``, its own process); yield its URL."""
    from local.servers import child_service

    os.environ.update(BENCH_AWS_ENVIRONMENT)
    with child_service("local.dynamodb", 0, name="DynamoDB (moto)") as url:
        yield url
