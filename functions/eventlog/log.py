"""The event log: one DynamoDB table that all three transports read.

The guarantee
-------------
Per channel, every published event gets a unique ``seq``, assigned in publish
order and answered to its publisher. A reader that resumes from its cursor gets
every later event, in seq order, none skipped and none twice. Seqs are
gapless as readers see them: a reader only ever moves its cursor over seqs it
knows the fate of, and the only seqs without an event are ones no publisher was
ever told it got (tombstones, below), which the cursor moves past.

Publishing: a counter, then a conditional put
---------------------------------------------
1. Take the next seq from the channel's head item with one ``UpdateItem``:
   ``ADD head 1``, ``SET assigned_at = now``, returning the new value. DynamoDB
   applies the updates of one item one after the other, so N racing publishers
   get N different seqs in N calls, with no conflicts and no retries. (The old
   design, one ``TransactWriteItems`` that moved the head from H to H+1 only if
   it was still H, made every racer but one cancel with ``TransactionConflict``
   and try again: throughput fell as publishers were added.)
2. Put the event at that seq, on condition ``attribute_not_exists(seq)``.

What bounds a hot channel now is DynamoDB's per-partition write rate (1,000
write units/s, ``DYNAMODB_PARTITION_WRITE_UNITS_PER_SECOND``): a publish of an
event under 1 KB costs 2 write units (the counter, the put), where the
transaction cost 4 (transactional writes cost 2 units per KB), plus every
cancelled attempt. Sources: docs.aws.amazon.com/amazondynamodb/latest/developerguide/
transaction-apis.html (capacity and conflicts) and .../WorkingWithItems.html
(atomic counters).

The price: a seq now exists (in the head) before its event does. Readers must
tell "not written yet" from "never will be":

Reading: stop at a hole, wait, and fill an abandoned seq with a tombstone
---------------------------------------------------------------------------
A read is a strongly consistent ``Query`` of ``seq > cursor``. Walking the
items in seq order, it returns events, skips tombstones (the reply's ``next``
moves past them) and stops at the first seq with no item (a hole). A hole below
the head is a publisher between steps 1 and 2. The read does not pass it:

- while the hole is younger than ``SEQ_ABANDONED_AFTER_SECONDS`` (longer than
  any publisher can take, see ``eventlog.config``; measured from the
  ``assigned_at`` of the next item or the head, which was taken later), the
  read returns what it has before it and the caller reads again later;
- after that, the read writes a tombstone at the hole, on condition
  ``attribute_not_exists(seq)``, and goes on. Exactly one of the tombstone and
  the late event can win that condition: if the event won, it is read like any
  other; if the tombstone won, the late publisher's put fails, it sees a
  tombstone there and takes a fresh seq. Either way no reader ever passed a seq
  whose fate was open, and no publisher is told a seq that readers skip.

Retention is a DynamoDB TTL, which deletes lazily (typically within days of
expiry), so reads skip expired items themselves, in full 1 MB pages, and at
most ``READ_MAX_QUERIES`` queries per read. A cursor whose next seq is gone
gets ``reset`` with the oldest retained seq. A hole whose predecessor is not
retained (expired or deleted) may be history TTL deleted rather than an
abandoned seq, so it is answered with ``reset``, not filled silently: a reset
may then name a seq that was never an event, never the other way round.

The races, and what closes each
-------------------------------
=============================================  ==========================================
race                                           closed by
=============================================  ==========================================
N publishers take seqs at once                 the counter: one item's updates are applied
                                               one at a time, each returns its own value
N+1 is written before N                        readers stop at the hole N; they never hand
                                               out N+1 before N is written or tombstoned
publisher dies between counter and put         after the bound, a reader's conditional
                                               tombstone settles N; readers move past it
a slow publisher and a tombstone race for N    the same condition on both puts: one wins;
                                               a publisher that lost takes a fresh seq
botocore retries a put that had committed      the item carries the publish's ``writer``
                                               token: "exists, and is mine" is success
head item deleted or not a number              the counter's condition fails (or the ADD
                                               does): rebuild the head from the newest
                                               item, then take a seq again
head behind the events (restored from backup)  a put that finds an event at its seq
                                               rebuilds the head, then takes a fresh seq
a live-only reader starts at head H while      H counts as published before it: the
events up to H are still being written         reader starts after them
TTL leaves thousands of expired items          full pages, and at most ``READ_MAX_QUERIES``
                                               per read; the reply resets to where it got
=============================================  ==========================================

WebSocket fan-out follows the table's stream, which is in write order: N+1 can
be streamed before N. Clients already hold a later event and backfill the gap
(``client.sequencer``); tombstones have no ``event`` attribute, so the stream
filter drops them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eventlog import metrics, schema
from eventlog.config import (
    DYNAMODB_CONNECT_TIMEOUT_SECONDS,
    DYNAMODB_MAX_ATTEMPTS,
    DYNAMODB_MAX_POOL_CONNECTIONS,
    DYNAMODB_READ_TIMEOUT_SECONDS,
    MAX_READ_LIMIT,
    PUBLISH_MAX_ATTEMPTS,
    READ_MAX_QUERIES,
    SEQ_ABANDONED_AFTER_SECONDS,
    Settings,
)
from eventlog.errors import EventTooLarge, PublishContention
from eventlog.events import (
    Event,
    parse_cursor,
    utc_timestamp,
    validate_channel,
    validate_limit,
)

logger = logging.getLogger(__name__)

READ_MAX_PASSES = 4
"""Holes one read may settle (each costs a pass over the items before it); past that it
returns what it has and the next read goes on."""

_SIZE_PROBE_SEQ = 10**19
"""A seq with more digits than any channel reaches: the size check before a seq is taken uses
it, so the real event is never larger than the one checked."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """The events after a cursor, and where to continue.

    ``next`` is the cursor to send next: the last seq this read accounted for (the
    last returned event, or a tombstone after it), or the given cursor when it
    accounted for none. On ``reset`` (the cursor is older than the retained history,
    or ahead of the channel's head) ``oldest`` is the oldest retained seq, or head+1
    when nothing is retained, and ``next`` continues from there.
    ``head`` is the channel's last seq when this read reached it, else None.
    """

    channel: str
    events: list[Event]
    next: int
    reset: bool = False
    oldest: int | None = None
    head: int | None = None


@dataclass(slots=True)
class _Walk:
    """One pass over a channel's items after a cursor, in seq order."""

    covered: int
    """The last seq accounted for: an event returned or a tombstone skipped."""
    events: list[Event] = field(default_factory=list)
    head: int | None = None
    """The head item's value, when the pass reached it."""
    head_missing: bool = False
    """The pass reached the end of the channel without a (readable) head item."""
    hole_end: int | None = None
    """The last seq of a hole that stopped the pass: before the next item, or the head."""
    hole_assigned_at: float = 0.0
    """When that item's seq was taken: later than the hole's (0 when unknown)."""
    covered_retained: bool = False
    """The item at ``covered`` is one this pass saw unexpired (not the cursor's own)."""
    expired: bool = False
    """Expired items were skipped before the first event: history is gone."""
    out_of_queries: bool = False

    @property
    def hole(self) -> int | None:
        return None if self.hole_end is None else self.covered + 1


class _SeqTaken(Exception):
    """The put found an item at its seq already: a tombstone, or an event when the head
    was behind."""

    def __init__(self, *, by_event: bool) -> None:
        super().__init__("seq taken")
        self.by_event = by_event


class EventLog:
    """Publish to and read from the events table.

    The DynamoDB client is created on first use, from boto3's usual configuration,
    so importing this module costs nothing and a test can pass its own client.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        max_attempts: int = PUBLISH_MAX_ATTEMPTS,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._client = client
        self._client_lock = threading.Lock()
        self._clock = clock
        self._max_attempts = max_attempts

    @property
    def table_name(self) -> str:
        return self.settings.events_table_name

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = dynamodb_client()
        return self._client

    def _key(self, channel: str, seq: int) -> dict[str, Any]:
        return {schema.CHANNEL: {"S": channel}, schema.SEQ: {"N": str(seq)}}

    # --- publish ------------------------------------------------------------------------------

    def publish(self, channel: str, data: Any) -> Event:
        """Append ``data`` to ``channel`` and return the event with its assigned seq."""
        validate_channel(channel)
        # Refuse what cannot be stored before taking a seq, so a refusal leaves no hole.
        probe = Event(channel=channel, seq=_SIZE_PROBE_SEQ, data=data, time=utc_timestamp())
        size = len(probe.encode().encode())  # encode() has refused what UTF-8 cannot carry
        if size > self.settings.max_event_bytes:
            raise EventTooLarge(
                f"encoded event is {size} bytes; the limit is {self.settings.max_event_bytes}"
            )
        writer = uuid.uuid4().hex
        started = time.monotonic()
        retaken = rebuilds = 0
        for _ in range(self._max_attempts):
            seq, assigned_at, rebuilt = self._take_seq(channel)
            rebuilds += rebuilt
            event = Event(
                channel=channel,
                seq=seq,
                data=data,
                time=utc_timestamp(datetime.fromtimestamp(assigned_at, UTC)),
            )
            try:
                self._put_event(event, assigned_at, writer)
            except _SeqTaken as taken:
                retaken += 1
                if taken.by_event:
                    logger.warning("%s/%d already holds an event: head rebuilt", channel, seq)
                    rebuilds += self._rebuild_head(channel)
                else:
                    logger.warning("%s/%d was filled before this publish wrote it", channel, seq)
                continue
            _publish_metrics(started, retaken=retaken, rebuilds=rebuilds)
            return event
        _publish_metrics(started, retaken=retaken, rebuilds=rebuilds)
        raise PublishContention(f"gave up after {self._max_attempts} seqs on {channel!r}")

    def _take_seq(self, channel: str) -> tuple[int, float, int]:
        """The next seq of ``channel`` from its head counter, when it was taken, and how many
        times the head had to be rebuilt first."""
        rebuilds = 0
        for _ in range(3):
            now = self._clock()
            try:
                reply = self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(channel, schema.HEAD_SEQ),
                    UpdateExpression="ADD #h :one SET #a = :now",
                    # Without a head the counter would restart at 1 under existing events.
                    ConditionExpression="attribute_exists(#h)",
                    ExpressionAttributeNames={"#h": schema.HEAD, "#a": schema.ASSIGNED_AT},
                    ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"N": str(now)}},
                    ReturnValues="UPDATED_NEW",
                )
            except Exception as exc:
                code = _error_code(exc)
                if code == "ConditionalCheckFailedException":
                    rebuilds += self._rebuild_head(channel)  # a new channel, or a lost head
                    continue
                if code == "ValidationException" and self._head_is_broken(channel):
                    logger.warning("head of %r is not a number: rebuilding it", channel)
                    rebuilds += self._rebuild_head(channel)
                    continue
                raise
            return int(reply["Attributes"][schema.HEAD]["N"]), now, rebuilds
        raise PublishContention(f"the head of {channel!r} could not be rebuilt")

    def _put_event(self, event: Event, assigned_at: float, writer: str) -> None:
        expires_at = int(assigned_at) + self.settings.retention_seconds
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    **self._key(event.channel, event.seq),
                    schema.EVENT: {"S": event.encode()},
                    schema.EXPIRES_AT: {"N": str(expires_at)},
                    schema.ASSIGNED_AT: {"N": str(assigned_at)},
                    schema.WRITER: {"S": writer},
                },
                ConditionExpression="attribute_not_exists(#s)",
                ExpressionAttributeNames={"#s": schema.SEQ},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = getattr(exc, "response", {}).get("Item")
            if item is None:  # an emulator that does not return the item
                item = self._get(event.channel, event.seq) or {}
            if item.get(schema.WRITER, {}).get("S") == writer:
                return  # botocore retried a put that had committed: it is ours
            raise _SeqTaken(by_event=schema.EVENT in item) from None

    def _rebuild_head(self, channel: str) -> bool:
        """Set a missing, non-numeric or lagging head to the newest seq that has an item.

        True if this call rebuilt a head that was broken: a new channel's first head (at 0)
        is a start, not a rebuild."""
        newest = self._newest_seq(channel)
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(channel, schema.HEAD_SEQ),
                UpdateExpression="SET #h = :newest",
                ConditionExpression=(
                    "attribute_not_exists(#h) OR NOT attribute_type(#h, :number) OR #h < :newest"
                ),
                ExpressionAttributeNames={"#h": schema.HEAD},
                ExpressionAttributeValues={":newest": {"N": str(newest)}, ":number": {"S": "N"}},
            )
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False  # another publisher rebuilt it, or the counter is past the newest item
        if newest:
            logger.warning("head of %r rebuilt at %d", channel, newest)
        return bool(newest)

    def _head_is_broken(self, channel: str) -> bool:
        item = self._get(channel, schema.HEAD_SEQ)
        return item is not None and _number(item, schema.HEAD) is None

    def _newest_seq(self, channel: str) -> int:
        page = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="#c = :c AND #s < :head",
            ExpressionAttributeNames={"#c": schema.CHANNEL, "#s": schema.SEQ},
            ExpressionAttributeValues={
                ":c": {"S": channel},
                ":head": {"N": str(schema.HEAD_SEQ)},
            },
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = page.get("Items", [])
        return int(items[0][schema.SEQ]["N"]) if items else 0

    # --- read ---------------------------------------------------------------------------------

    def head(self, channel: str) -> int:
        """The channel's last assigned seq (0 before its first event)."""
        item = self._get(channel, schema.HEAD_SEQ)
        head = _number(item, schema.HEAD) if item else None
        # No head, or a broken one: the newest item says as much, without writing.
        return self._newest_seq(channel) if head is None else head

    def read(self, channel: str, after: int, limit: int = MAX_READ_LIMIT) -> ReadResult:
        """Return up to ``limit`` events of ``channel`` with seq > ``after``, in seq order."""
        validate_channel(channel)
        after = parse_cursor(after)
        validate_limit(limit)
        queries = [READ_MAX_QUERIES]
        cursor, lost = after, False
        for _ in range(READ_MAX_PASSES):
            walk = self._walk(channel, cursor, limit, queries)
            head = self._newest_seq(channel) if walk.head_missing else walk.head
            if head is not None and cursor > head and not lost:
                head = max(head, self._newest_seq(channel))  # a head behind its events
                if cursor > head:
                    # A cursor from the future (a wiped table, another environment): start over.
                    return self._reset(self.read(channel, 0, limit), head)
            lost = lost or walk.expired
            hole = walk.hole
            if hole is None or walk.events or walk.out_of_queries:
                break
            if self._clock() < walk.hole_assigned_at + SEQ_ABANDONED_AFTER_SECONDS:
                break  # a publisher is writing it: read again later
            if walk.covered_retained or (
                walk.covered == cursor and self._retained(channel, cursor)
            ):
                if self._fill(channel, hole):
                    logger.warning("%s/%d was abandoned by its publisher: filled", channel, hole)
                continue  # filled, or the late event won: either way, walk again
            if self._get(channel, hole) is not None:
                continue  # written since the walk
            # The seq before the hole is gone too: this is history TTL deleted (or a seq
            # abandoned there, which cannot be told apart). Say so, and go on after it.
            assert walk.hole_end is not None
            cursor, lost = walk.hole_end, True
        return self._result(channel, walk, lost=lost, head=head)

    @staticmethod
    def _result(channel: str, walk: _Walk, *, lost: bool, head: int | None) -> ReadResult:
        reached = walk.head is not None or walk.head_missing
        if walk.hole is not None or walk.out_of_queries or not reached:
            head = None  # this read did not reach the head
        if not lost:
            return ReadResult(channel=channel, events=walk.events, next=walk.covered, head=head)
        return ReadResult(
            channel=channel,
            events=walk.events,
            next=walk.covered,
            reset=True,
            oldest=walk.events[0].seq if walk.events else walk.covered + 1,
            head=head,
        )

    @staticmethod
    def _reset(result: ReadResult, head: int) -> ReadResult:
        oldest = result.oldest or (result.events[0].seq if result.events else head + 1)
        return ReadResult(
            channel=result.channel,
            events=result.events,
            next=result.events[-1].seq if result.events else oldest - 1,
            reset=True,
            oldest=oldest,
            head=result.head,
        )

    def _walk(self, channel: str, after: int, limit: int, queries: list[int]) -> _Walk:
        now = int(self._clock())
        walk = _Walk(covered=after)
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#c = :c AND #s > :after",
            "ExpressionAttributeNames": {"#c": schema.CHANNEL, "#s": schema.SEQ},
            "ExpressionAttributeValues": {":c": {"S": channel}, ":after": {"N": str(after)}},
            "ConsistentRead": True,
            # One more than asked, so a read that drains the channel also sees the head item.
            "Limit": limit + 1,
        }
        while True:
            if queries[0] <= 0:
                walk.out_of_queries = True
                return walk
            queries[0] -= 1
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                seq = int(item[schema.SEQ]["N"])
                if seq == schema.HEAD_SEQ:
                    walk.head = _number(item, schema.HEAD)
                    walk.head_missing = walk.head is None
                    if walk.head is not None and walk.head > walk.covered:
                        walk.hole_end = walk.head
                        walk.hole_assigned_at = _number(item, schema.ASSIGNED_AT, float) or 0.0
                    return walk
                if not walk.events and int(item[schema.EXPIRES_AT]["N"]) <= now:
                    # Expired history that TTL has not deleted yet. A hole before it is
                    # older still, so no publisher is writing it.
                    walk.covered, walk.expired, walk.covered_retained = seq, True, False
                    continue
                if seq != walk.covered + 1:
                    walk.hole_end = seq - 1
                    walk.hole_assigned_at = _number(item, schema.ASSIGNED_AT, float) or 0.0
                    return walk
                walk.covered, walk.covered_retained = seq, True
                if schema.EVENT in item:
                    walk.events.append(Event.decode(item[schema.EVENT]["S"]))
                    if len(walk.events) == limit:
                        return walk
            if "LastEvaluatedKey" not in page:
                walk.head_missing = True
                return walk
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            if walk.events:
                kwargs["Limit"] = limit - len(walk.events) + 1
            else:
                kwargs.pop("Limit", None)  # skipping: full pages, not a few items per call

    def _get(self, channel: str, seq: int) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.client.get_item(
            TableName=self.table_name, Key=self._key(channel, seq), ConsistentRead=True
        ).get("Item")
        return item

    def _retained(self, channel: str, seq: int) -> bool:
        item = self._get(channel, seq) if seq else None
        return item is not None and int(item[schema.EXPIRES_AT]["N"]) > int(self._clock())

    def _fill(self, channel: str, seq: int) -> bool:
        """Put a tombstone at ``seq`` unless something is there; True if it was put."""
        now = self._clock()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    **self._key(channel, seq),
                    schema.EXPIRES_AT: {"N": str(int(now) + self.settings.retention_seconds)},
                    # Later than the seq was taken: what a hole below it is measured from.
                    schema.ASSIGNED_AT: {"N": str(now)},
                },
                ConditionExpression="attribute_not_exists(#s)",
                ExpressionAttributeNames={"#s": schema.SEQ},
            )
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return code if isinstance(code, str) else None


def _number(item: dict[str, Any], name: str, kind: Callable[[str], Any] = int) -> Any:
    """A numeric attribute of ``item``, or None when it is missing or not a number."""
    value = item.get(name, {}).get("N")
    try:
        return None if value is None else kind(value)
    except ValueError:
        return None


def dynamodb_client() -> Any:
    """A DynamoDB client from boto3's configuration (``AWS_ENDPOINT_URL_DYNAMODB`` and friends)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        config=Config(
            retries={"mode": "standard", "max_attempts": DYNAMODB_MAX_ATTEMPTS},
            connect_timeout=DYNAMODB_CONNECT_TIMEOUT_SECONDS,
            max_pool_connections=DYNAMODB_MAX_POOL_CONNECTIONS,
            read_timeout=DYNAMODB_READ_TIMEOUT_SECONDS,
        ),
    )


_default: EventLog | None = None
_default_lock = threading.Lock()


def default_log() -> EventLog:
    """The process-wide log configured from the environment, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = EventLog()
    return _default


def _publish_metrics(started: float, *, retaken: int, rebuilds: int) -> None:
    # Per publish: the latency a publisher sees, and the contention it met on the way.
    metrics.emit(
        metrics.EVENTLOG,
        {
            metrics.PUBLISH_LATENCY: (time.monotonic() - started) * 1000,
            metrics.SEQS_RETAKEN: retaken,
            metrics.HEAD_REBUILDS: rebuilds,
        },
    )
