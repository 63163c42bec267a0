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
from eventlog.config import (
    MAX_EVENT_BYTES,
    PUBLISH_MAX_ATTEMPTS,
    READ_MAX_QUERIES,
    SEQ_ABANDONED_AFTER_SECONDS,
    Settings,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_log(dynamodb: Any, **settings: Any) -> tuple[EventLog, Clock]:
    clock = Clock(1_800_000_000.0)
    log = EventLog(
        settings=Settings(events_table_name="events", **settings), client=dynamodb, clock=clock
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


def test_a_hole_being_written_is_waited_for_not_reset(ten: EventLog, dynamodb: Any) -> None:
    # Seq 1 is not there yet, but it was taken a moment ago: its publisher is writing it.
    reader = EventLog(settings=ten.settings, client=HidingClient(dynamodb, hide={1}))
    result = reader.read("news", 0)
    assert (result.events, result.next, result.reset, result.head) == ([], 0, False, None)
    assert [e.seq for e in reader.read("news", 0).events] == list(range(1, 11))


# --- concurrent publishers, abandoned seqs, broken heads ---------------------------------------


def test_two_processes_interleave_without_duplicates(dynamodb: Any, events_table: str) -> None:
    first, _ = make_log(dynamodb)
    second, _ = make_log(dynamodb)
    assert first.publish("news", "a").seq == 1
    assert second.publish("news", "b").seq == 2
    assert first.publish("news", "c").seq == 3
    assert [e.data for e in first.read("news", 0).events] == ["a", "b", "c"]


class EventPuts:
    """Pass-through client that runs ``hook`` on each event put's arguments before sending it
    (``times`` puts, or all): a publisher that stalls or dies between taking its seq and
    writing its event, a reader that fills the seq first, a put sent twice."""

    def __init__(self, client: Any, hook: Any, *, times: int | None = 1) -> None:
        self._client = client
        self.hook = hook
        self.times = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        if schema.EVENT in kwargs["Item"] and self.times != 0:
            self.times = None if self.times is None else self.times - 1
            self.hook(kwargs)
        return self._client.put_item(**kwargs)


class PublisherDied(Exception):
    pass


def test_an_abandoned_seq_is_waited_for_then_filled_and_skipped(
    dynamodb: Any, events_table: str
) -> None:
    log, clock = make_log(dynamodb)
    log.publish("news", "one")

    def die(put: dict[str, Any]) -> None:
        raise PublisherDied(put["Item"]["seq"]["N"])

    dying = EventLog(settings=log.settings, client=EventPuts(dynamodb, die), clock=clock)
    with pytest.raises(PublisherDied):
        dying.publish("news", "never written")
    log.publish("news", "three")

    # Seq 2 was taken a moment ago: readers wait for it and hand out nothing after it.
    waiting = log.read("news", 1)
    assert (waiting.events, waiting.next, waiting.reset) == ([], 1, False)
    assert [e.seq for e in log.read("news", 0).events] == [1]

    clock.now += SEQ_ABANDONED_AFTER_SECONDS
    moved_on = log.read("news", 1)
    assert [e.data for e in moved_on.events] == ["three"]
    assert (moved_on.next, moved_on.reset, moved_on.head) == (3, False, 3)
    # Later readers skip the tombstone, and never see it as an event.
    assert [e.seq for e in log.read("news", 0).events] == [1, 3]
    tail = log.read("news", 2)
    assert ([e.seq for e in tail.events], tail.reset) == ([3], False)


def test_a_publisher_slower_than_the_bound_takes_a_fresh_seq(
    dynamodb: Any, events_table: str
) -> None:
    log, clock = make_log(dynamodb)
    log.publish("news", "one")

    def stall(put: dict[str, Any]) -> None:
        # While this publisher stalls, another publishes, time passes and a reader fills
        # the stalled seq.
        log.publish("news", "three")
        clock.now += SEQ_ABANDONED_AFTER_SECONDS
        assert [e.seq for e in log.read("news", 1).events] == [3]

    slow = EventLog(settings=log.settings, client=EventPuts(dynamodb, stall), clock=clock)
    late = slow.publish("news", "late")
    assert late.seq == 4
    assert [(e.seq, e.data) for e in log.read("news", 0).events] == [
        (1, "one"),
        (3, "three"),
        (4, "late"),
    ]


def test_a_put_botocore_retried_after_it_committed_is_the_publish_itself(
    dynamodb: Any, events_table: str
) -> None:
    # The put commits, its response is lost, and botocore sends it again.
    def commit_first(put: dict[str, Any]) -> None:
        dynamodb.put_item(**put)

    log, clock = make_log(dynamodb)
    replayed = EventLog(
        settings=log.settings, client=EventPuts(dynamodb, commit_first), clock=clock
    )
    assert replayed.publish("news", "once").seq == 1
    assert [e.data for e in log.read("news", 0).events] == ["once"]
    assert log.head("news") == 1


def test_publishing_gives_up_with_a_typed_error_when_every_seq_is_filled(
    dynamodb: Any, events_table: str
) -> None:
    # A reader fills each seq just before this publisher writes it.
    def fill_first(put: dict[str, Any]) -> None:
        tombstone = {k: v for k, v in put["Item"].items() if k in schema.TOMBSTONE_ATTRIBUTES}
        dynamodb.put_item(TableName="events", Item=tombstone)

    always_filled = EventPuts(dynamodb, fill_first, times=None)
    log = EventLog(settings=Settings(events_table_name="events"), client=always_filled)
    with pytest.raises(PublishContention, match=f"gave up after {PUBLISH_MAX_ATTEMPTS} seqs"):
        log.publish("news", 1)
    assert all(schema.EVENT not in item for item in stored_items(dynamodb))


def set_head(dynamodb: Any, value: dict[str, str] | None) -> None:
    key = {"channel": {"S": "news"}, "seq": {"N": str(schema.HEAD_SEQ)}}
    if value is None:
        dynamodb.delete_item(TableName="events", Key=key)
    else:
        dynamodb.put_item(TableName="events", Item={**key, schema.HEAD: value})


@pytest.mark.parametrize(
    "broken_head",
    [None, {"S": "not a number"}, {"N": "3"}],
    ids=["missing", "not-a-number", "behind-the-events"],
)
def test_a_broken_head_is_rebuilt_from_the_newest_event(
    ten: EventLog, dynamodb: Any, broken_head: dict[str, str] | None
) -> None:
    set_head(dynamodb, broken_head)
    # Readers keep their place meanwhile: no reset, no cursor "from the future".
    assert (ten.read("news", 10).reset, ten.read("news", 10).events) == (False, [])
    assert ten.head("news") == (3 if broken_head == {"N": "3"} else 10)
    assert ten.publish("news", "eleven").seq == 11
    assert ten.head("news") == 11
    assert [e.seq for e in ten.read("news", 0).events] == list(range(1, 12))
    assert ten.publish("news", "twelve").seq == 12


def test_a_wiped_table_restarts_the_sequence(dynamodb: Any, events_table: str) -> None:
    log, _ = make_log(dynamodb)
    log.publish("news", 1)
    log.publish("news", 2)
    dynamodb.delete_table(TableName="events")
    schema.create_table(dynamodb, schema.EVENTS_TABLE, "events")
    assert log.publish("news", 3).seq == 1


def test_sixteen_racing_publishers_get_exactly_one_to_n_at_default_settings(
    dynamodb: Any, events_table: str
) -> None:
    settings = Settings(events_table_name="events")
    publishers = [EventLog(settings=settings, client=dynamodb) for _ in range(16)]
    reader = EventLog(settings=settings, client=dynamodb)
    per_publisher = 25
    total = 16 * per_publisher
    errors: list[BaseException] = []
    assigned: list[int] = []
    observed_gaps: list[str] = []
    done = threading.Event()
    start = threading.Barrier(16)

    def publish(log: EventLog, worker: int) -> None:
        start.wait()
        try:
            for n in range(per_publisher):
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
    assert sorted(assigned) == list(range(1, total + 1))
    assert observed_gaps == []
    stored: list[Event] = []
    while page := reader.read("race", stored[-1].seq if stored else 0).events:
        stored += page
    assert [e.seq for e in stored] == list(range(1, total + 1))
    # each publisher's own events keep the order it published them in
    by_worker: dict[int, list[int]] = {}
    for event in stored:
        by_worker.setdefault(event.data["worker"], []).append(event.data["n"])
    assert by_worker == {worker: list(range(per_publisher)) for worker in range(16)}


# --- reads stay bounded when TTL lags ---------------------------------------------------------


class CountingQueries:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.queries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **kwargs: Any) -> Any:
        self.queries += 1
        return self._client.query(**kwargs)


def write_expired(dynamodb: Any, *, count: int, expired_at: int, padding: int = 0) -> None:
    """``count`` events on "news" that expired at ``expired_at`` and TTL has not deleted."""
    items = [
        {
            "channel": {"S": "news"},
            "seq": {"N": str(seq)},
            schema.EVENT: {"S": Event("news", seq, "x" * padding, "t").encode()},
            schema.EXPIRES_AT: {"N": str(expired_at)},
        }
        for seq in range(1, count + 1)
    ]
    for start in range(0, count, 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        dynamodb.batch_write_item(RequestItems={"events": batch})
    set_head(dynamodb, {"N": str(count)})


def test_thousands_of_expired_items_cost_a_few_queries(dynamodb: Any, events_table: str) -> None:
    log, clock = make_log(dynamodb)
    write_expired(dynamodb, count=5_000, expired_at=int(clock.now) - 1)
    log.publish("news", "fresh")
    counting = CountingQueries(dynamodb)
    reader = EventLog(settings=log.settings, client=counting, clock=clock)
    result = reader.read("news", 0, limit=1)
    assert ([e.seq for e in result.events], result.reset, result.oldest) == ([5_001], True, 5_001)
    assert counting.queries <= 3


def test_a_read_over_more_expired_items_than_it_may_query_resumes(
    dynamodb: Any, events_table: str
) -> None:
    log, clock = make_log(dynamodb)
    # 4 KB each: 1 MB pages of about 250, so skipping them all takes more queries than one read.
    count = 250 * (READ_MAX_QUERIES + 2)
    write_expired(dynamodb, count=count, expired_at=int(clock.now) - 1, padding=4_000)
    log.publish("news", "fresh")
    counting = CountingQueries(dynamodb)
    reader = EventLog(settings=log.settings, client=counting, clock=clock)
    first = reader.read("news", 0)
    assert counting.queries == READ_MAX_QUERIES
    assert first.events == []
    assert first.reset is True
    assert 0 < first.next < count
    assert first.oldest == first.next + 1
    second = reader.read("news", first.next)
    assert ([e.data for e in second.events], second.reset) == (["fresh"], True)
    assert counting.queries <= 2 * READ_MAX_QUERIES


def test_a_lone_surrogate_is_refused_and_nothing_is_written(log: EventLog, dynamodb: Any) -> None:
    with pytest.raises(InvalidData, match="surrogates not allowed"):
        log.publish("news", {"text": "\ud800"})
    assert stored_items(dynamodb) == []
