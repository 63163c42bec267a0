"""A DynamoDB for the fan-out measurements: moto in this process, as the local stack runs it."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import httpx

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
    """Start moto on 127.0.0.1, patched as the local stack's DynamoDB; yield its URL."""
    from moto.server import ThreadedMotoServer

    from local.moto_fidelity import dynamodb_fidelity

    os.environ.update(BENCH_AWS_ENVIRONMENT)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with dynamodb_fidelity():
        server: Any = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            url = f"http://{host}:{port}"
            # moto keeps its state per process: start from empty tables every time.
            httpx.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
            yield url
        finally:
            server.stop()
