"""Shared fixtures: AWS credentials that can never reach AWS, and an event log on moto."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

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
    }
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(_name, None)


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto for every AWS service the code touches.

    DynamoDB executes each request atomically; in-process moto does not (two threads
    can interleave inside one TransactWriteItems and corrupt its dicts). A lock
    around moto's request dispatch restores one-request-at-a-time, which is what
    the concurrency tests need: publishers still race *between* their requests,
    exactly where the real races are.
    """
    import threading

    from moto import mock_aws
    from moto.core.botocore_stubber import BotocoreStubber

    dispatch = BotocoreStubber.__call__
    lock = threading.RLock()

    def atomic_dispatch(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return dispatch(self, *args, **kwargs)

    with mock.patch.object(BotocoreStubber, "__call__", atomic_dispatch), mock_aws():
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
    """Make moto's transaction rollback snapshot O(items) shallow copies instead of a deep copy.

    moto deep-copies every table a transaction touches before applying it, so a
    test that appends 800 events spends minutes copying. The snapshot below keeps
    the rollback exact for what this project's transactions do (put new items,
    SET attributes of existing ones): each item's attribute dict is copied, and
    the attribute values, which SET replaces rather than mutates, are shared.
    """
    import copy as stdlib_copy
    from types import SimpleNamespace

    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    def snapshot_item(item: Any) -> Any:
        # Plain dict operations: copy.copy would re-validate every attribute's size.
        clone = object.__new__(type(item))
        clone.__dict__.update(item.__dict__)
        attrs_type: Any = type(item.attrs)
        clone.attrs = attrs_type.__new__(attrs_type)
        dict.update(clone.attrs, item.attrs)
        return clone

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if not isinstance(value, Table):
            return stdlib_copy.deepcopy(value, memo)
        clone = stdlib_copy.copy(value)
        clone.items = type(value.items)(value.items.default_factory)
        for hash_key, partition in value.items.items():
            clone.items[hash_key] = {
                range_key: snapshot_item(item) for range_key, item in partition.items()
            }
        return clone

    with mock.patch.object(models, "copy", SimpleNamespace(deepcopy=deepcopy)):
        yield


@pytest.fixture
def connections_table(dynamodb: Any) -> str:
    """The WebSocket transport's connections table on moto, from its one spec."""
    from eventlog import schema
    from websocket_api.connections import CONNECTIONS_TABLE

    schema.create_table(dynamodb, CONNECTIONS_TABLE, "connections")
    return "connections"
