"""A local DynamoDB Streams event source mapping: what Lambda does between a stream and a function.

On AWS, Lambda polls each shard of the events table's stream (about four times a
second), drops records that do not match the mapping's filter, and invokes the
function with batches in the shape below. The local stack does the same against
the moto server's stream and calls the real fan-out handler in-process, with the
same failure semantics:

- The function returns ``{"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}]}``:
  the batch is checkpointed before the first failed record, and processing
  retries from it (``ReportBatchItemFailures``).
- The function raises: with ``bisect``, the batch is split in two and each half
  retried, so one poison record is isolated instead of blocking its neighbours.
- A record that still fails after ``max_retries`` goes to the on-failure
  destination (here: the ``failed`` list and an error log line) and the shard
  moves on, as ``MaximumRetryAttempts`` with an on-failure destination does.

Divergences, on purpose: one poller thread for every shard (moto's stream has a
single shard), retries without Lambda's backoff, and batches are not held back
for ``MaximumBatchingWindowInSeconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


def matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` matches an event filtering pattern.

    Supports what this project's filters use: lists of exact values and
    ``{"exists": bool}`` at any depth. Anything else raises, so a richer pattern
    in the infrastructure cannot be silently ignored here.
    """
    if not isinstance(value, Mapping):
        return False
    for key, expected in pattern.items():
        present = key in value
        if isinstance(expected, Mapping):
            if not present or not matches(expected, value[key]):
                return False
            continue
        if not isinstance(expected, list):
            raise ValueError(f"unsupported filter for {key!r}: {expected!r}")
        if not any(_matches_rule(rule, present, value.get(key)) for rule in expected):
            return False
    return True


def _matches_rule(rule: Any, present: bool, actual: Any) -> bool:
    if isinstance(rule, Mapping):
        if set(rule) == {"exists"}:
            return bool(rule["exists"]) == present
        raise ValueError(f"unsupported filter rule: {rule!r}")
    return present and actual == rule


def lambda_record(record: Mapping[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """A ``GetRecords`` record in the shape Lambda passes to the function."""
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", region),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


class LocalStreamMapping:
    def __init__(
        self,
        *,
        streams_client: Any,
        stream_arn: str,
        handler: Handler,
        filter_patterns: list[Mapping[str, Any]],
        region: str,
        batch_size: int = 100,
        max_retries: int = 3,
        bisect: bool = True,
        poll_interval: float = 0.05,
    ) -> None:
        self._streams = streams_client
        self._stream_arn = stream_arn
        self._handler = handler
        self._filters = filter_patterns
        self._region = region
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._bisect = bisect
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._iterators: dict[str, str | None] = {}
        self.failed: list[dict[str, Any]] = []
        self.invocations = 0

    def start(self) -> None:
        """Start reading from the stream's current end, like a new mapping at LATEST."""
        for shard in self._shards():
            self._iterators[shard] = self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard, ShardIteratorType="LATEST"
            )["ShardIterator"]
        self._thread = threading.Thread(target=self._run, name="stream-mapping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _shards(self) -> list[str]:
        description = self._streams.describe_stream(StreamArn=self._stream_arn)
        return [shard["ShardId"] for shard in description["StreamDescription"]["Shards"]]

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            for shard, iterator in list(self._iterators.items()):
                if iterator is None:
                    continue
                try:
                    page = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)
                except Exception:
                    if self._stop.is_set():
                        return
                    logger.exception("reading the stream failed; retrying")
                    time.sleep(1)
                    continue
                self._iterators[shard] = page.get("NextShardIterator")
                records = [
                    lambda_record(r, stream_arn=self._stream_arn, region=self._region)
                    for r in page.get("Records", [])
                ]
                batch = [r for r in records if any(matches(f, r) for f in self._filters)]
                if batch:
                    busy = True
                    self.deliver(batch)
            if not busy:
                self._stop.wait(self._poll_interval)

    def deliver(self, batch: list[dict[str, Any]], attempt: int = 0) -> None:
        """Invoke the handler until every record succeeded or went to the failure destination."""
        while batch:
            self.invocations += 1
            try:
                response = self._handler({"Records": batch}, None)
            except Exception:
                logger.exception("fan-out raised on a batch of %d", len(batch))
                if attempt >= self._max_retries:
                    self._give_up(batch)
                    return
                if self._bisect and len(batch) > 1:
                    middle = len(batch) // 2
                    self.deliver(batch[:middle], attempt + 1)
                    self.deliver(batch[middle:], attempt + 1)
                    return
                attempt += 1
                continue
            failures = (response or {}).get("batchItemFailures") or []
            if not failures:
                return
            failed_ids = {failure["itemIdentifier"] for failure in failures}
            first = next(
                (i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed_ids),
                0,  # an identifier we do not know: retry the whole batch, as Lambda does
            )
            if attempt >= self._max_retries:
                self._give_up(batch[first:])
                return
            batch = batch[first:]
            attempt += 1

    def _give_up(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            logger.error(
                "record %s went to the failure destination after %d retries",
                record["dynamodb"]["SequenceNumber"],
                self._max_retries,
            )
        self.failed.extend(records)
