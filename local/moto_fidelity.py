"""Patches that make moto behave like DynamoDB where this project depends on it.

1. *Atomic requests.* DynamoDB executes each request atomically; moto does not
   (two threads can interleave inside one ``TransactWriteItems``, and a read can
   see an item half written). Serializing moto's request dispatch restores
   one-request-at-a-time. Concurrent clients still race *between* their
   requests, which is where the real races are.
2. *Cheap transaction rollback.* moto deep-copies every table a transaction
   touches before applying it, so each ``TransactWriteItems`` costs time
   proportional to the whole table, and a local stack slows down as its history
   grows. The snapshot below copies each item's attribute dict instead (for tables
   with and without a sort key); attribute values are shared, which is exact for
   transactions that put items and SET attributes (both replace values, neither
   mutates one). The table object itself is copied shallowly, and that is
   load-bearing: the copy shares the table's stream shard, so the shard iterators
   handed out before a cancelled transaction still read the stream moto writes
   after it (a deep copy gives the restored table a shard of its own, and every
   reader of the old one sees nothing more).
   It also takes back what a cancelled transaction streamed. moto applies a
   transaction's writes one by one, each appending its stream record to the shard,
   and on cancelling restores the tables from the snapshot but leaves the records:
   an INSERT for a Put that passed its condition, of a write that never happened
   (DynamoDB streams only committed writes). With the shared shard every reader
   would see it, so the shard is cut back to its length before the transaction;
   requests run one at a time (patch 1), so no reader can have seen the records
   taken back. The event log publishes without transactions now, but a phantom
   INSERT of an event would be fanned out to every subscriber, so the fix stays
   with the patch that makes the shard shared.

3. *Request routing once per service.* moto's server finds the backend of each
   request by listing its own package folder (``list_of_moto_modules``): about a
   hundred and fifty ``stat`` calls per request, inside the lock above. The list
   does not change while the process runs, so it is read once.
4. *A query reads its partition.* DynamoDB finds a partition by its key, so a
   ``Query`` costs what it reads. moto's sorts every item of the table on every
   query (``Table.all_items``) and then keeps the partition's: about 100 ms per
   query once a local stack holds 5,000 events, inside the lock above, so every
   read and every new channel's first publish queued behind it. A query of the
   table itself (not an index) now starts from its partition's items; moto's own
   code still sorts, filters and pages them.

``dynamodb_fidelity`` applies them all, as the local stack's DynamoDB process
(``local.dynamodb``) and the benchmark's run them; tests take the ones they need.
None touches the code under test.
"""

from __future__ import annotations

import contextlib
import copy as stdlib_copy
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

_lock = threading.RLock()


@contextlib.contextmanager
def atomic_requests() -> Iterator[None]:
    """Serialize moto's in-process (botocore) and server (WSGI) request dispatch."""
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    def serialized(dispatch: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not getattr(self, "enabled", True):
                # The in-process stubber sees every botocore call, also the ones a moto
                # *server* answers; while no mock is active it passes them on untouched,
                # and taking the lock there would only queue them twice.
                return dispatch(self, *args, **kwargs)
            with _lock:
                return dispatch(self, *args, **kwargs)

        return call

    with (
        mock.patch.object(BotocoreStubber, "__call__", serialized(BotocoreStubber.__call__)),
        mock.patch.object(
            DomainDispatcherApplication,
            "__call__",
            serialized(DomainDispatcherApplication.__call__),
        ),
    ):
        yield


def _snapshot_item(item: Any) -> Any:
    # Plain dict operations: copy.copy would re-validate every attribute's size.
    clone = object.__new__(type(item))
    clone.__dict__.update(item.__dict__)
    attrs_type: Any = type(item.attrs)
    clone.attrs = attrs_type.__new__(attrs_type)
    dict.update(clone.attrs, item.attrs)
    return clone


@contextlib.contextmanager
def cheap_transaction_rollback() -> Iterator[None]:
    """Make moto's pre-transaction snapshot O(items) shallow copies instead of a deep copy,
    and take back the stream records of a cancelled transaction."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if not isinstance(value, Table):
            return stdlib_copy.deepcopy(value, memo)
        clone = stdlib_copy.copy(value)  # shallow: the stream shard stays shared (see above)
        clone.items = type(value.items)(value.items.default_factory)
        for hash_key, partition in value.items.items():
            if value.range_key_attr is None:  # hash-only: the partition is the item
                clone.items[hash_key] = _snapshot_item(partition)
            else:
                clone.items[hash_key] = {
                    range_key: _snapshot_item(item) for range_key, item in partition.items()
                }
        return clone

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: Any) -> None:
        shards = [t.stream_shard for t in self.tables.values() if t.stream_shard is not None]
        lengths = [(shard, len(shard.items)) for shard in shards]
        try:
            original(self, transact_items)
        except Exception:
            for shard, length in lengths:
                del shard.items[length:]  # a cancelled transaction streams nothing
            raise

    with (
        mock.patch.object(models, "copy", SimpleNamespace(deepcopy=deepcopy)),
        mock.patch.object(DynamoDBBackend, "transact_write_items", transact_write_items),
    ):
        yield


@contextlib.contextmanager
def partition_queries() -> Iterator[None]:
    """Let a query of a table's own key read that partition, not the whole table."""
    import inspect

    from moto.dynamodb.models.table import Table

    original = Table.query
    signature = inspect.signature(original)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        hash_key = bound.arguments.get("hash_key")
        if bound.arguments.get("index_name") or hash_key is None or not self.range_key_attr:
            return original(self, *args, **kwargs)
        partition = list(self.items.get(hash_key, {}).values())
        # moto's query calls all_items() once, for the base table; requests run one at a
        # time (atomic_requests), so shadowing it on this table for one call is safe.
        self.all_items = lambda: partition
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    with mock.patch.object(Table, "query", query):
        yield


@contextlib.contextmanager
def cached_backend_lookup() -> Iterator[None]:
    """List moto's service modules once, not on every request its server routes."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    with mock.patch.object(backends, "list_of_moto_modules", return_value=modules):
        yield


@contextlib.contextmanager
def dynamodb_fidelity() -> Iterator[None]:
    """Every patch above: moto answering as the local stack's DynamoDB."""
    with (
        atomic_requests(),
        cheap_transaction_rollback(),
        cached_backend_lookup(),
        partition_queries(),
    ):
        yield
