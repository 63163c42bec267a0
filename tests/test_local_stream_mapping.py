"""The local stream mapping: Lambda's checkpointing, bisect, give-up and record age.

The mapping is driven by ``poll``/``deliver`` on a fake stream and fake handlers, so
every step is deterministic: no threads, no waiting. The poller's schedule runs on a fake
clock; one test runs the real poller thread, to show that nothing a batch does can stop it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from local.stream_mapping import (
    RECORD_TOO_OLD,
    RETRIES_EXHAUSTED,
    InvalidBatchResponse,
    LocalStreamMapping,
    lambda_record,
    retry_from,
)

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/events/stream/2026-12-02T00:00:00.000"
SHARD = "shardId-00000001700000000000-0a1b2c3d"
INSERTS = [{"eventName": ["INSERT"]}]
MAX_AGE = 7200.0


def stream_record(sequence_number: int, *, created: float = 1_000.0) -> dict[str, Any]:
    """A record as ``GetRecords`` returns it (boto3 parses the creation time to a datetime)."""
    return {
        "eventID": f"id-{sequence_number}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime.fromtimestamp(created, tz=UTC),
            "Keys": {"channel": {"S": "news"}, "seq": {"N": str(sequence_number)}},
            "SequenceNumber": str(sequence_number),
            "SizeBytes": 40,
            "StreamViewType": "NEW_IMAGE",
        },
    }


def lambda_batch(*numbers: int, created: float = 1_000.0) -> list[dict[str, Any]]:
    """Records in the shape the mapping hands to the function."""
    return [
        lambda_record(stream_record(n, created=created), stream_arn=STREAM_ARN, region="us-east-1")
        for n in numbers
    ]


class FakeStream:
    """A one-shard DynamoDB Streams client serving ``pages`` of records, then empty pages.

    An exception in ``pages`` is raised by that ``get_records`` call instead.
    """

    def __init__(self, pages: Sequence[list[dict[str, Any]] | Exception]) -> None:
        self._pages = list(pages)

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": SHARD}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "iterator-0"}

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:
        page = self._pages.pop(0) if self._pages else []
        if isinstance(page, Exception):
            raise page
        return {"Records": page[:Limit], "NextShardIterator": ShardIterator + "+"}


class Function:
    """A stream handler that records every batch it gets and answers with ``respond``."""

    def __init__(self, respond: Callable[[list[str]], Any] = lambda _: None) -> None:
        self.batches: list[list[str]] = []
        self._respond = respond

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        numbers = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        self.batches.append(numbers)
        return self._respond(numbers)


def mapping_for(
    function: Function,
    stream: Any = None,
    *,
    clock: Callable[[], float] = lambda: 1_000.0,
    **options: Any,
) -> LocalStreamMapping:
    mapping = LocalStreamMapping(
        streams_client=stream or FakeStream([]),
        stream_arn=STREAM_ARN,
        handler=function,
        filter_patterns=INSERTS,
        region="us-east-1",
        max_record_age_seconds=MAX_AGE,
        clock=clock,
        **options,
    )
    mapping.open("TRIM_HORIZON")
    return mapping


def fails(*bad: str) -> Callable[[list[str]], Any]:
    """Answer a partial batch failure naming every record in ``bad`` that the batch holds."""
    return lambda numbers: {
        "batchItemFailures": [{"itemIdentifier": n} for n in bad if n in numbers]
    }


# --- What counts as success, partial failure and whole-batch failure ---------------------------


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, {"id": 1}],
    ids=["null", "empty", "empty-list", "null-list", "no-failures-key"],
)
def test_a_response_without_failures_checkpoints_the_whole_batch(response: Any) -> None:
    function = Function(lambda _: response)
    mapping = mapping_for(function, FakeStream([[stream_record(1), stream_record(2)]]))

    assert mapping.poll() is True
    assert mapping.poll() is False  # nothing is redelivered
    assert function.batches == [["1", "2"]]
    assert mapping.on_failure == []


@pytest.mark.parametrize(
    "response",
    [
        "ok",
        ["1"],
        {"batchItemFailures": "2"},
        {"batchItemFailures": [{"foo": 1}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemIdentifier": "999"}]},
        {"batchItemFailures": ["2"]},
    ],
    ids=[
        "string",
        "list",
        "failures-not-a-list",
        "wrong-key",
        "empty-identifier",
        "null-identifier",
        "identifier-not-in-batch",
        "failure-not-an-object",
    ],
)
def test_a_malformed_response_fails_the_whole_batch(response: Any) -> None:
    batch = lambda_batch(1, 2, 3)
    with pytest.raises(InvalidBatchResponse):
        retry_from(response, batch)

    answers = iter([response, None])
    function = Function(lambda _: next(answers))
    mapping_for(function, bisect=False).deliver(batch, shard_id=SHARD)

    assert function.batches == [["1", "2", "3"], ["1", "2", "3"]]  # all of it, again


def test_a_partial_failure_resumes_from_the_first_failed_record() -> None:
    responses = iter([fails("4", "3", "5"), fails()])
    function = Function(lambda numbers: next(responses)(numbers))
    mapping = mapping_for(function, FakeStream([[stream_record(n) for n in range(1, 6)]]))

    mapping.poll()

    # Records 1 and 2 are checkpointed; the lowest sequence number named is where it resumes.
    assert function.batches == [["1", "2", "3", "4", "5"], ["3", "4", "5"]]
    assert mapping.on_failure == []


# --- Bisect, give-up, record age ------------------------------------------------------------------


def test_bisect_isolates_a_poison_record_and_delivers_its_neighbours_once() -> None:
    went_through: list[str] = []

    def respond(numbers: list[str]) -> None:
        if "3" in numbers:
            raise ValueError("poison")
        went_through.extend(numbers)

    function = Function(respond)
    mapping = mapping_for(function, max_retries=2)

    mapping.deliver(lambda_batch(1, 2, 3, 4, 5, 6), shard_id=SHARD)

    assert function.batches == [
        ["1", "2", "3", "4", "5", "6"],
        ["1", "2", "3"],
        ["1"],
        ["2", "3"],
        ["2"],
        ["3"],  # alone now: splitting used no retries, these are its two
        ["3"],
        ["3"],
        ["4", "5", "6"],
    ]
    assert went_through == ["1", "2", "4", "5", "6"]
    [discarded] = mapping.on_failure
    assert discarded["requestContext"]["condition"] == RETRIES_EXHAUSTED
    assert discarded["responseContext"]["functionError"] == "Unhandled"
    info = discarded["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        "3",
        "3",
        1,
    )


def test_after_max_retries_metadata_goes_to_the_on_failure_destination_and_the_shard_moves_on() -> (
    None
):
    function = Function(fails("2"))
    pages: list[list[dict[str, Any]] | Exception] = [
        [stream_record(1, created=1_000.0), stream_record(2, created=1_001.5)],
        [stream_record(3)],
    ]
    mapping = mapping_for(
        function, FakeStream(pages), clock=lambda: 1_002.25, max_retries=2, bisect=False
    )

    mapping.poll()
    mapping.poll()

    # Tried once in its batch, then retried twice; only then does the shard move on.
    assert function.batches == [["1", "2"], ["2"], ["2"], ["3"]]
    assert mapping.on_failure == [
        {
            "requestContext": {
                "requestId": mapping.on_failure[0]["requestContext"]["requestId"],
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:fanout",
                "condition": RETRIES_EXHAUSTED,
                "approximateInvokeCount": 3,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "version": "1.0",
            "timestamp": "1970-01-01T00:16:42.250Z",
            "DDBStreamBatchInfo": {
                "shardId": SHARD,
                "startSequenceNumber": "2",
                "endSequenceNumber": "2",
                "approximateArrivalOfFirstRecord": "1970-01-01T00:16:41Z",
                "approximateArrivalOfLastRecord": "1970-01-01T00:16:41Z",
                "batchSize": 1,
                "streamArn": STREAM_ARN,
            },
        }
    ]


def test_records_older_than_the_maximum_age_are_discarded_without_invoking() -> None:
    now = 10_000.0
    function = Function()
    mapping = mapping_for(function, clock=lambda: now)

    stale = lambda_batch(1, 2, created=now - MAX_AGE - 1)
    fresh = lambda_batch(3, created=now - MAX_AGE + 1)
    mapping.deliver(stale + fresh, shard_id=SHARD)

    assert function.batches == [["3"]]
    [discarded] = mapping.on_failure
    assert discarded["requestContext"]["condition"] == RECORD_TOO_OLD
    assert discarded["requestContext"]["approximateInvokeCount"] == 0
    assert discarded["responseContext"] == {}
    assert discarded["DDBStreamBatchInfo"]["batchSize"] == 2


def test_a_failing_record_is_retried_only_until_it_is_too_old() -> None:
    clock = [0.0]

    def respond(_: list[str]) -> None:
        clock[0] += 3_000.0  # each attempt takes long enough to age the record
        raise RuntimeError("down")

    function = Function(respond)
    mapping = mapping_for(function, clock=lambda: clock[0], max_retries=100)

    mapping.deliver(lambda_batch(1, created=0.0), shard_id=SHARD)

    assert len(function.batches) == 3  # at 0, 3,000 and 6,000 s; at 9,000 s it is too old
    [discarded] = mapping.on_failure
    assert discarded["requestContext"]["condition"] == RECORD_TOO_OLD
    assert discarded["requestContext"]["approximateInvokeCount"] == 3
    assert discarded["responseContext"]["functionError"] == "Unhandled"


# --- The poller thread --------------------------------------------------------------------------


def test_the_poller_keeps_delivering_after_bad_batches_and_stream_errors() -> None:
    delivered = threading.Event()

    def respond(numbers: list[str]) -> Any:
        if numbers == ["1"]:
            raise KeyError("a bug in the function")
        if numbers == ["2"]:
            return {"batchItemFailures": [{"id": "2"}]}  # malformed
        delivered.set()
        return None

    pages: list[list[dict[str, Any]] | Exception] = [
        [stream_record(1)],
        RuntimeError("the stream is unavailable"),
        [stream_record(2)],
        [stream_record(3)],
    ]
    function = Function(respond)
    mapping = LocalStreamMapping(
        streams_client=FakeStream(pages),
        stream_arn=STREAM_ARN,
        handler=function,
        filter_patterns=INSERTS,
        region="us-east-1",
        max_retries=0,
        poll_interval=0.001,
    )
    mapping.start()
    try:
        assert delivered.wait(timeout=10), "fan-out stopped after a bad batch"
    finally:
        mapping.stop()

    assert function.batches == [["1"], ["2"], ["3"]]
    assert [r["DDBStreamBatchInfo"]["startSequenceNumber"] for r in mapping.on_failure] == [
        "1",
        "2",
    ]


class ClockedMapping(LocalStreamMapping):
    """A mapping on a fake monotonic clock: each ``GetRecords`` takes ``call_seconds`` of it,
    and the poller's waits are recorded (and pass on the clock) instead of slept."""

    def __init__(self, stream: FakeStream, *, call_seconds: float, polls: int) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.polls_left = polls
        super().__init__(
            streams_client=stream,
            stream_arn=STREAM_ARN,
            handler=Function(),
            filter_patterns=INSERTS,
            region="us-east-1",
            poll_interval=0.25,
            monotonic=lambda: self.now,
        )
        self.open("TRIM_HORIZON")
        self._call_seconds = call_seconds

    def poll(self) -> bool:
        self.now += self._call_seconds
        self.polls_left -= 1
        if self.polls_left == 0:
            self._stop.set()
        return super().poll()

    def _wait(self, seconds: float) -> None:
        self.waits.append(round(seconds, 9))
        self.now += seconds


def test_polls_start_an_interval_apart_whatever_a_call_takes() -> None:
    # Lambda polls a shard four times a second: the interval runs from one poll's start
    # to the next, so a 100 ms GetRecords leaves 150 ms of wait, not 250.
    mapping = ClockedMapping(FakeStream([]), call_seconds=0.1, polls=4)
    mapping._run()
    assert mapping.waits == [0.15] * 4


def test_a_poll_that_delivered_is_followed_by_another_at_once() -> None:
    mapping = ClockedMapping(
        FakeStream([[stream_record(1)], [stream_record(2)]]), call_seconds=0.1, polls=4
    )
    mapping._run()
    assert mapping.waits == [0.15, 0.15]  # none after the two busy polls, then on the beat


def test_a_call_longer_than_the_interval_is_followed_by_the_next_poll_at_once() -> None:
    mapping = ClockedMapping(FakeStream([]), call_seconds=0.4, polls=3)
    mapping._run()
    assert mapping.waits == []


def test_each_invocation_gets_the_deployed_timeout_as_its_deadline() -> None:
    remaining: list[tuple[int, str]] = []

    def function(event: dict[str, Any], context: Any) -> None:
        remaining.append((context.get_remaining_time_in_millis(), context.function_name))

    mapping = mapping_for(
        Function(), FakeStream([[stream_record(1)], [stream_record(2)]]), timeout_seconds=300
    )
    mapping._handler = function
    mapping.poll()
    mapping.poll()
    assert len(remaining) == 2
    assert all(299_000 < left <= 300_000 and name == "fanout" for left, name in remaining)

    contexts: list[Any] = []
    untimed = mapping_for(Function(), FakeStream([[stream_record(1)]]))
    untimed._handler = lambda event, context: contexts.append(context)
    untimed.poll()
    assert contexts == [None]  # without a timeout, as before: the function has no deadline
