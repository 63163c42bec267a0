"""The event log on moto: sequencing, cursors, retention, rejections and races."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest

from eventlog import (
    Event,
    EventLog,
    EventTooLarge,
    InvalidChannel,
    InvalidCursor,
    InvalidData,
    InvalidLimit,
    PublishContention,
    schema,
)
from eventlog.config import MAX_EVENT_BYTES, Settings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_log(dynamodb: Any, max_attempts: int = 200, **settings: Any) -> tuple[EventLog, Clock]:
    clock = Clock(1_800_000_000.0)
    log = EventLog(
        settings=Settings(events_table_name="events", **settings),
        client=dynamodb,
        clock=clock,
        max_attempts=max_attempts,
    )
    return log, clock


def stored_items(dynamodb: Any) -> list[dict[str, Any]]:
    return list(dynamodb.scan(TableName="events")["Items"])


# --- publish ----------------------------------------------------------------------------------


def test_publish_assigns_seq_from_one_per_channel(log: EventLog) -> None:
    first = log.publish("news", {"n": 1})
    second = log.publish("news", [2])
    other = log.publish("sport", "x")
    assert (first.seq, second.seq, other.seq) == (1, 2, 1)
    assert first.channel == "news"
    assert first.data == {"n": 1}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.time)
    assert log.head("news") == 2
    assert log.head("never-used") == 0


def test_events_expire_by_ttl_and_the_head_never_does(dynamodb: Any, events_table: str) -> None:
    log, clock = make_log(dynamodb, retention_seconds=3600)
    log.publish("news", 1)
    items = {int(item["seq"]["N"]): item for item in stored_items(dynamodb)}
    assert int(items[1][schema.EXPIRES_AT]["N"]) == int(clock.now) + 3600
    assert schema.EXPIRES_AT not in items[schema.HEAD_SEQ]
    assert json.loads(items[1][schema.EVENT]["S"])["seq"] == 1


def test_oversized_event_is_refused_and_nothing_is_written(
    dynamodb: Any, events_table: str
) -> None:
    log, _ = make_log(dynamodb, max_event_bytes=1024)
    with pytest.raises(EventTooLarge, match="limit is 1024"):
        log.publish("news", "x" * 1024)
    assert stored_items(dynamodb) == []
    assert log.publish("news", "x" * 900).seq == 1


def test_default_size_limit_counts_encoded_bytes(log: EventLog) -> None:
    with pytest.raises(EventTooLarge, match=f"limit is {MAX_EVENT_BYTES}"):
        log.publish("news", "é" * (MAX_EVENT_BYTES // 2))


def test_size_limit_only_goes_down() -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        Settings(max_event_bytes=MAX_EVENT_BYTES + 1)


@pytest.mark.parametrize("channel", ["", "bad channel", "x" * 65])
def test_publish_to_invalid_channel_writes_nothing(
    log: EventLog, dynamodb: Any, channel: str
) -> None:
    with pytest.raises(InvalidChannel):
        log.publish(channel, 1)
    assert stored_items(dynamodb) == []


def test_non_json_data_writes_nothing(log: EventLog, dynamodb: Any) -> None:
    with pytest.raises(InvalidData):
        log.publish("news", float("nan"))
    assert stored_items(dynamodb) == []


# --- read -------------------------------------------------------------------------------------


@pytest.fixture
def ten(log: EventLog) -> EventLog:
    for n in range(1, 11):
        log.publish("news", n)
    return log


def test_read_from_zero_returns_everything_in_order(ten: EventLog) -> None:
    result = ten.read("news", 0)
    assert [e.seq for e in result.events] == list(range(1, 11))
    assert [e.data for e in result.events] == list(range(1, 11))
    assert (result.next, result.reset, result.oldest, result.head) == (10, False, None, 10)


def test_read_from_the_middle_with_a_limit_pages_in_order(ten: EventLog) -> None:
    page = ten.read("news", 4, limit=3)
    assert [e.seq for e in page.events] == [5, 6, 7]
    assert page.next == 7
    assert page.head is None  # the page stopped before the end of the channel
    rest = ten.read("news", page.next, limit=100)
    assert [e.seq for e in rest.events] == [8, 9, 10]
    assert rest.head == 10


def test_read_at_the_head_is_empty_and_keeps_the_cursor(ten: EventLog) -> None:
    result = ten.read("news", 10)
    assert (result.events, result.next, result.reset, result.head) == ([], 10, False, 10)


def test_read_of_an_unknown_channel_is_empty(log: EventLog) -> None:
    result = log.read("nothing-here", 0)
    assert (result.events, result.next, result.reset, result.head) == ([], 0, False, 0)


def test_cursor_beyond_the_head_resets_to_the_oldest(ten: EventLog) -> None:
    # e.g. a client that remembers a cursor from a table that has since been wiped
    result = ten.read("news", 99)
    assert result.reset is True
    assert result.oldest == 1
    assert [e.seq for e in result.events] == list(range(1, 11))
    assert result.next == 10


def test_cursor_older_than_retention_resets(dynamodb: Any, events_table: str) -> None:
    log, clock = make_log(dynamodb, retention_seconds=1000)
    for n in range(1, 6):
        log.publish("news", n)
    clock.now += 500
    for n in range(6, 11):
        log.publish("news", n)
    clock.now += 600  # events 1-5 expired; TTL has not deleted them yet (it is lazy)

    stale = log.read("news", 2)
    assert stale.reset is True
    assert stale.oldest == 6
    assert [e.seq for e in stale.events] == [6, 7, 8, 9, 10]
    assert stale.next == 10

    from_zero = log.read("news", 0)
    assert (from_zero.reset, from_zero.oldest) == (True, 6)

    current = log.read("news", 5)
    assert current.reset is False
    assert [e.seq for e in current.events] == [6, 7, 8, 9, 10]


def test_cursor_older_than_retention_when_nothing_is_retained(
    dynamodb: Any, events_table: str
) -> None:
    log, clock = make_log(dynamodb, retention_seconds=1000)
    for n in range(1, 4):
        log.publish("news", n)
    clock.now += 5000
    result = log.read("news", 1)
    assert (result.events, result.reset, result.oldest, result.next) == ([], True, 4, 3)
    assert log.read("news", result.next).reset is False
    # and after TTL really deleted the items, the answer is the same
    for seq in (1, 2, 3):
        dynamodb.delete_item(
            TableName="events", Key={"channel": {"S": "news"}, "seq": {"N": str(seq)}}
        )
    assert log.read("news", 1).oldest == 4


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "bad/channel", "after": 0}, InvalidChannel),
        ({"channel": "news", "after": -1}, InvalidCursor),
        ({"channel": "news", "after": "abc"}, InvalidCursor),
        ({"channel": "news", "after": 0, "limit": 0}, InvalidLimit),
        ({"channel": "news", "after": 0, "limit": 101}, InvalidLimit),
    ],
)
def test_read_rejections(log: EventLog, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        log.read(**kwargs)


# --- the read side of the race, made deterministic ----------------------------------------------


class HidingClient:
    """Pass-through client whose first Query omits chosen seqs, as an in-flight read might."""

    def __init__(self, client: Any, hide: set[int]) -> None:
        self._client = client
        self._hide = hide

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **kwargs: Any) -> Any:
        page = self._client.query(**kwargs)
        if self._hide:
            page["Items"] = [i for i in page["Items"] if int(i["seq"]["N"]) not in self._hide]
            self._hide = set()
        return page


def test_a_gap_in_the_middle_of_a_read_is_never_handed_out(ten: EventLog, dynamodb: Any) -> None:
    reader = EventLog(settings=ten.settings, client=HidingClient(dynamodb, hide={4}))
    result = reader.read("news", 0)
    assert [e.seq for e in result.events] == [1, 2, 3]
    assert result.next == 3


def test_a_missing_first_event_that_exists_is_read_again_not_reset(
    ten: EventLog, dynamodb: Any
) -> None:
    reader = EventLog(settings=ten.settings, client=HidingClient(dynamodb, hide={1}))
    result = reader.read("news", 0)
    assert result.reset is False
    assert [e.seq for e in result.events] == list(range(1, 11))


# --- concurrent publishers ----------------------------------------------------------------------


def test_a_stale_head_costs_one_retry_not_a_duplicate(dynamodb: Any, events_table: str) -> None:
    # Two processes: each remembers the head it last saw, and one falls behind.
    first, _ = make_log(dynamodb)
    second, _ = make_log(dynamodb)
    assert first.publish("news", "a").seq == 1
    assert second.publish("news", "b").seq == 2
    assert first.publish("news", "c").seq == 3  # its guess (1) was stale
    assert [e.data for e in first.read("news", 0).events] == ["a", "b", "c"]


def test_publishing_gives_up_with_a_typed_error_when_it_always_loses(
    dynamodb: Any, events_table: str
) -> None:
    class AlwaysLosing:
        """Another publisher moves the head just before each of our appends."""

        rival_head = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(dynamodb, name)

        def transact_write_items(self, **kwargs: Any) -> Any:
            self.rival_head += 1
            dynamodb.put_item(
                TableName="events",
                Item={"channel": {"S": "news"}, "seq": {"N": str(schema.HEAD_SEQ)},
                      "head": {"N": str(self.rival_head)}},
            )  # fmt: skip
            return dynamodb.transact_write_items(**kwargs)

    log = EventLog(
        settings=Settings(events_table_name="events"), client=AlwaysLosing(), max_attempts=3
    )
    with pytest.raises(PublishContention, match="gave up after 3 attempts"):
        log.publish("news", 1)
    assert [i for i in stored_items(dynamodb) if i["seq"]["N"] != str(schema.HEAD_SEQ)] == []


def test_a_wiped_table_restarts_the_sequence(dynamodb: Any, events_table: str) -> None:
    log, _ = make_log(dynamodb)
    log.publish("news", 1)
    log.publish("news", 2)
    dynamodb.delete_table(TableName="events")
    schema.create_table(dynamodb, schema.EVENTS_TABLE, "events")
    assert log.publish("news", 3).seq == 1


def test_concurrent_publishers_get_exactly_one_to_eight_hundred(
    cheap_transaction_rollback: None, dynamodb: Any, events_table: str
) -> None:
    # Eight threads under one GIL are not eight Lambdas: a winner keeps the GIL and
    # publishes again before the losers wake, so a loser can lose for a long time.
    # Fairness is not what this test is about; the attempt cap is lifted so it can
    # check what is: every publish gets a seq, and the seqs are exactly 1..800.
    publishers = [make_log(dynamodb, max_attempts=100_000)[0] for _ in range(8)]
    reader, _ = make_log(dynamodb)
    errors: list[BaseException] = []
    assigned: list[int] = []
    observed_gaps: list[str] = []
    done = threading.Event()

    def publish(log: EventLog, worker: int) -> None:
        try:
            for n in range(100):
                assigned.append(log.publish("race", {"worker": worker, "n": n}).seq)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read_while_publishing() -> None:
        cursor = 0
        while not done.is_set():
            result = reader.read("race", cursor)
            expected = list(range(cursor + 1, cursor + 1 + len(result.events)))
            if result.reset or [e.seq for e in result.events] != expected:
                observed_gaps.append(f"after {cursor}: {[e.seq for e in result.events]}")
            cursor = result.next

    threads = [threading.Thread(target=publish, args=(p, i)) for i, p in enumerate(publishers)]
    watcher = threading.Thread(target=read_while_publishing)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()

    assert errors == []
    assert sorted(assigned) == list(range(1, 801))
    assert observed_gaps == []
    stored: list[Event] = []
    while page := reader.read("race", stored[-1].seq if stored else 0).events:
        stored += page
    assert [e.seq for e in stored] == list(range(1, 801))
    # each publisher's own events keep the order it published them in
    by_worker: dict[int, list[int]] = {}
    for event in stored:
        by_worker.setdefault(event.data["worker"], []).append(event.data["n"])
    assert by_worker == {worker: list(range(100)) for worker in range(8)}
