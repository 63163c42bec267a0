"""A local DynamoDB Streams event source mapping: what Lambda does between a stream and a function.

On AWS, Lambda polls each shard of the events table's stream (at a base rate of four
times a second, https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html, "Polling and
batching streams"), drops records that do not match the mapping's filter, and invokes the
function with batches in the shape below. The local stack does the same against
the moto server's stream and calls the real fan-out handler in-process, with the
failure semantics of the deployed mapping (``infra/websocket_api.py``):

- *Success*: the function returns nothing, or a response whose
  ``batchItemFailures`` is missing, null or empty. The whole batch is checkpointed.
- *Partial failure* (``ReportBatchItemFailures``): ``{"batchItemFailures":
  [{"itemIdentifier": <SequenceNumber>}, ...]}``. Every record before the first one
  named is checkpointed, and the retry starts there.
- *Whole-batch failure*: the function raises, or its response is not a valid batch
  response (not an object, ``batchItemFailures`` not a list, an entry without a
  non-empty ``itemIdentifier``, or one that names no record of the batch). Lambda
  counts these as a failure of the whole batch; here a bad response is logged as
  such, and the poller carries on, whatever the function returned.
  (https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html,
  "Success and failure conditions".)
- *Bisect*: a whole-batch failure splits the batch in two and each half is tried
  in order; splitting does not use up retries, so one poison record ends up alone
  while its neighbours go through.
- *Give up*: a record that still fails after ``max_retries`` retries, or that is
  older than ``max_record_age_seconds`` (then without invoking the function at
  all), goes to the on-failure destination and the shard moves on.
  (https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html.)

Each invocation gets a context whose ``get_remaining_time_in_millis`` counts down
from ``timeout_seconds`` (the deployed function's timeout), so the function's own
deadline logic runs here as deployed; the timeout itself is not enforced (a
thread cannot be stopped). Without ``timeout_seconds`` the context is None.

The on-failure destination is the ``on_failure`` list plus an error log line.
Each entry has the shape Lambda sends to an SQS or SNS destination for a stream
source: metadata about the failed invocation (``requestContext``,
``responseContext``, ``version``, ``timestamp``, ``DDBStreamBatchInfo`` with the
shard, the sequence number range, the arrival times of the first and last record,
the batch size and the stream ARN), never the records themselves. An operator
reads the records back from the stream with that range, within its 24 hours.

Divergences, on purpose: one poller thread for every shard (moto's stream has a
single shard), retries without Lambda's backoff, and batches are not held back
for ``MaximumBatchingWindowInSeconds`` (the deployed window is 0 anyway). A
record discarded for its age before any invocation gets an empty
``responseContext``: AWS documents that record only for invoked batches.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

POLL_INTERVAL_SECONDS = 0.05
"""How often the local mapping reads each shard: faster than AWS's four times a second
(docs.aws.amazon.com/lambda/latest/dg/with-ddb.html), so local latencies stay short; the
bench's estimates for a deployment (``bench.aws_estimate``) put AWS's hop back in."""

RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_TOO_OLD = "RecordAgeExceeded"
"""The ``requestContext.condition`` of an on-failure record: why the records were discarded."""


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


class InvalidBatchResponse(ValueError):
    """The function's response is not a batch response Lambda accepts: the whole batch failed."""


def retry_from(response: Any, batch: Sequence[Mapping[str, Any]]) -> int | None:
    """Where processing of ``batch`` resumes after ``response``: None when it all succeeded.

    Raises ``InvalidBatchResponse`` for a response Lambda counts as a failure of the
    whole batch. Several failures: the lowest sequence number, the earliest in the batch.
    """
    if response is None:
        return None
    if not isinstance(response, Mapping):
        raise InvalidBatchResponse(f"the response is a {type(response).__name__}, not an object")
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return None
    if not isinstance(failures, list):
        raise InvalidBatchResponse("batchItemFailures is not a list")
    positions = {record["dynamodb"]["SequenceNumber"]: i for i, record in enumerate(batch)}
    found = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or not identifier:
            raise InvalidBatchResponse(f"a failure without an itemIdentifier: {failure!r}")
        if identifier not in positions:
            raise InvalidBatchResponse(f"itemIdentifier {identifier!r} is not in the batch")
        found.append(positions[identifier])
    return min(found)


def invocation_record(
    records: Sequence[Mapping[str, Any]],
    *,
    condition: str,
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    invoke_count: int,
    response_context: Mapping[str, Any],
    now: float,
) -> dict[str, Any]:
    """What Lambda sends to the on-failure destination for discarded stream ``records``."""
    first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": dict(response_context),
        "version": "1.0",
        "timestamp": _iso(now, milliseconds=True),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _arrival(first),
            "approximateArrivalOfLastRecord": _arrival(last),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def _arrival(dynamodb: Mapping[str, Any]) -> str | None:
    created = dynamodb.get("ApproximateCreationDateTime")
    return None if created is None else _iso(float(created), milliseconds=False)


def _iso(epoch: float, *, milliseconds: bool) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    if milliseconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Outcome:
    """One invocation's result: where to resume (None: done) and whether the whole batch failed."""

    resume_at: int | None
    whole_batch: bool = False
    response_context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Context:
    """The part of Lambda's context a stream function reads: its name and its deadline."""

    function_name: str
    deadline: float  # time.monotonic()
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class LocalStreamMapping:
    """Lambda's event source mapping for ``stream_arn`` -> ``handler``, on one thread.

    ``poll`` reads every shard once and delivers what it got (tests call it directly);
    ``start`` runs it in a loop on a thread that survives anything a batch does.
    ``max_record_age_seconds`` None means no limit (AWS's -1).
    """

    def __init__(
        self,
        *,
        streams_client: Any,
        stream_arn: str,
        handler: Handler,
        filter_patterns: Sequence[Mapping[str, Any]],
        region: str,
        batch_size: int = 100,
        max_retries: int = 3,
        bisect: bool = True,
        max_record_age_seconds: float | None = None,
        timeout_seconds: float | None = None,
        function_name: str = "fanout",
        poll_interval: float = POLL_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._streams = streams_client
        self._stream_arn = stream_arn
        self._handler = handler
        self._filters = filter_patterns
        self._region = region
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._bisect = bisect
        self._max_age = max_record_age_seconds
        self._timeout = timeout_seconds
        self._function_name = function_name
        # The function lives in the stream's account and region, as a deployed one would.
        account = stream_arn.split(":")[4] if stream_arn.count(":") >= 5 else ""
        self.function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self._poll_interval = poll_interval
        self._clock = clock
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._iterators: dict[str, str | None] = {}
        self.on_failure: list[dict[str, Any]] = []
        """What the on-failure destination received, oldest first."""
        self.invocations = 0

    def start(self) -> None:
        """Start reading from the stream's current end, like a new mapping at LATEST."""
        self.open("LATEST")
        self._thread = threading.Thread(target=self._run, name="stream-mapping", daemon=True)
        self._thread.start()

    def open(self, position: str) -> None:
        """Take an iterator at ``position`` (``LATEST``, ``TRIM_HORIZON``) on every shard."""
        description = self._streams.describe_stream(StreamArn=self._stream_arn)
        for shard in description["StreamDescription"]["Shards"]:
            self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard["ShardId"], ShardIteratorType=position
            )["ShardIterator"]

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        # A poll every interval, counted from the start of the last one (as "four times a
        # second" on AWS), not an interval of sleep after each GetRecords: that would add
        # the call's own time to every wait. A shard that had records is read again at once.
        next_poll = self._monotonic()
        while not self._stop.is_set():
            try:
                busy = self.poll()
            except Exception:
                if self._stop.is_set():
                    return
                # Nothing may end this thread: without it, all local fan-out stops silently.
                logger.exception("the stream mapping failed a poll; polling again")
                self._wait(min(1.0, 20 * self._poll_interval))
                next_poll = self._monotonic()
                continue
            now = self._monotonic()
            next_poll = now if busy else max(now, next_poll + self._poll_interval)
            if next_poll > now:
                self._wait(next_poll - now)

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)  # returns at once on stop

    def poll(self) -> bool:
        """Read each shard once and deliver its matching records; whether any were delivered."""
        delivered = False
        for shard, iterator in list(self._iterators.items()):
            if iterator is None:
                continue  # a closed shard
            page = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)
            self._iterators[shard] = page.get("NextShardIterator")
            records = [
                lambda_record(r, stream_arn=self._stream_arn, region=self._region)
                for r in page.get("Records", [])
            ]
            batch = [r for r in records if any(matches(f, r) for f in self._filters)]
            if batch:
                delivered = True
                self.deliver(batch, shard_id=shard)
        return delivered

    def deliver(self, batch: Sequence[dict[str, Any]], *, shard_id: str) -> None:
        """Invoke the handler until every record of ``batch`` succeeded or was discarded."""
        self._deliver(list(batch), shard_id=shard_id, retries=0, invoked=0)

    def _deliver(
        self, batch: list[dict[str, Any]], *, shard_id: str, retries: int, invoked: int
    ) -> None:
        last_response: dict[str, Any] = {}
        while batch:
            batch = self._discard_expired(batch, shard_id, invoked, last_response)
            if not batch:
                return
            invoked += 1
            outcome = self._invoke(batch)
            last_response = outcome.response_context
            if outcome.resume_at is None:
                return
            if outcome.whole_batch and self._bisect and len(batch) > 1:
                # Splitting does not count as a retry; each half keeps the retries left.
                middle = len(batch) // 2
                self._deliver(batch[:middle], shard_id=shard_id, retries=retries, invoked=invoked)
                self._deliver(batch[middle:], shard_id=shard_id, retries=retries, invoked=invoked)
                return
            batch = batch[outcome.resume_at :]  # everything before it is checkpointed
            if retries >= self._max_retries:
                self._discard(batch, RETRIES_EXHAUSTED, shard_id, invoked, last_response)
                return
            retries += 1

    def _invoke(self, batch: list[dict[str, Any]]) -> _Outcome:
        self.invocations += 1
        try:
            context = None
            if self._timeout is not None:
                context = _Context(self._function_name, time.monotonic() + self._timeout)
            response = self._handler({"Records": batch}, context)
        except Exception:
            logger.exception("the function raised on a batch of %d", len(batch))
            return _Outcome(0, whole_batch=True, response_context=_response_context("Unhandled"))
        try:
            resume_at = retry_from(response, batch)
        except InvalidBatchResponse as exc:
            logger.error("the whole batch of %d failed: %s", len(batch), exc)
            return _Outcome(0, whole_batch=True, response_context=_response_context(None))
        return _Outcome(resume_at, response_context=_response_context(None))

    def _discard_expired(
        self,
        batch: list[dict[str, Any]],
        shard_id: str,
        invoked: int,
        last_response: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """Send records older than the maximum age to the on-failure destination; the rest."""
        if self._max_age is None:
            return batch
        oldest_allowed = self._clock() - self._max_age
        fresh: list[dict[str, Any]] = []
        expired: list[dict[str, Any]] = []
        for record in batch:
            created = record["dynamodb"].get("ApproximateCreationDateTime")
            too_old = created is not None and float(created) < oldest_allowed
            (expired if too_old else fresh).append(record)
        if expired:
            self._discard(expired, RECORD_TOO_OLD, shard_id, invoked, last_response)
        return fresh

    def _discard(
        self,
        records: list[dict[str, Any]],
        condition: str,
        shard_id: str,
        invoked: int,
        response_context: Mapping[str, Any],
    ) -> None:
        record = invocation_record(
            records,
            condition=condition,
            shard_id=shard_id,
            stream_arn=self._stream_arn,
            function_arn=self.function_arn,
            invoke_count=invoked,
            response_context=response_context,
            now=self._clock(),
        )
        info = record["DDBStreamBatchInfo"]
        logger.error(
            "%d records (%s to %s) went to the on-failure destination: %s",
            len(records),
            info["startSequenceNumber"],
            info["endSequenceNumber"],
            condition,
        )
        self.on_failure.append(record)


def _response_context(function_error: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error is not None:
        context["functionError"] = function_error  # "Unhandled": the function raised
    return context
