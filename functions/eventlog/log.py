"""The event log: one DynamoDB table that all three transports read.

Publishing assigns each channel a gapless, strictly increasing ``seq``:

1. Take the channel's head H, the last assigned seq: from a strongly consistent
   read of the head item the first time, then from what this process last saw.
2. In one ``TransactWriteItems``: set the head to H+1 on condition that it is
   still H, and put the event H+1 on condition that it does not exist.
3. If the condition fails, another publisher won the race (or H was stale): the
   cancellation returns the current head item, so retry with it at once, after a
   jittered backoff, up to ``max_attempts`` times.

Why this gives the contract's guarantees:

- *Gapless and unique*: a seq is only ever taken by a transaction that moved the
  head from seq-1 to seq, and only one transaction can do that.
- *Event N is readable no later than N+1*: the transaction that writes event N is
  the same one that moves the head to N, and the transaction for N+1 can only
  begin after it has read that head. So N is committed before N+1 exists.
- *No duplicates on a lost response*: each attempt carries its own
  ``ClientRequestToken``, so botocore's automatic retry of an attempt that did
  commit is a no-op instead of a second event.

Reading is one strongly consistent ``Query`` of ``seq > cursor``. Retention is a
DynamoDB TTL, which deletes lazily (typically within days of expiry), so reads
also skip expired items themselves. A cursor whose next event is no longer
retained gets ``reset`` with the oldest retained seq; before saying so, the read
checks with a consistent ``GetItem`` that the missing event is really gone and not
merely racing the reader.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventlog import schema
from eventlog.config import MAX_READ_LIMIT, Settings
from eventlog.errors import EventTooLarge, PublishContention
from eventlog.events import (
    Event,
    encode_json,
    parse_cursor,
    utc_timestamp,
    validate_channel,
    validate_limit,
)

logger = logging.getLogger(__name__)

_RACE_CODES = {"ConditionalCheckFailed", "TransactionConflict"}


@dataclass(frozen=True, slots=True)
class ReadResult:
    """The events after a cursor, and where to continue.

    ``next`` is the cursor to send next: the last returned seq, or the given cursor
    when nothing was returned. On ``reset`` (the cursor is older than the retained
    history, or ahead of the channel's head) ``oldest`` is the oldest retained seq,
    or head+1 when nothing is retained, and ``next`` continues from there.
    ``head`` is the channel's last seq when this read reached it, else None.
    """

    channel: str
    events: list[Event]
    next: int
    reset: bool = False
    oldest: int | None = None
    head: int | None = None


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
        max_attempts: int = 50,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._client = client
        self._client_lock = threading.Lock()
        self._clock = clock
        self._max_attempts = max_attempts
        # Last head this process saw per channel: a guess that saves a read per publish.
        # A stale guess costs one cancelled transaction, which returns the true head.
        self._known_heads: dict[str, int] = {}

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

    # --- publish ------------------------------------------------------------------------------

    def publish(self, channel: str, data: Any) -> Event:
        """Append ``data`` to ``channel`` and return the event with its assigned seq."""
        validate_channel(channel)
        encode_json(data)  # refuse a non-JSON value before touching the table
        head = self._known_heads.get(channel)
        if head is None:
            head = self.head(channel)
        for attempt in range(self._max_attempts):
            now = self._clock()
            event = Event(
                channel=channel,
                seq=head + 1,
                data=data,
                time=utc_timestamp(datetime.fromtimestamp(now, UTC)),
            )
            encoded = event.encode()
            size = len(encoded.encode())
            if size > self.settings.max_event_bytes:
                raise EventTooLarge(
                    f"encoded event is {size} bytes; the limit is {self.settings.max_event_bytes}"
                )
            try:
                self.client.transact_write_items(
                    TransactItems=self._append_items(event, encoded, head, now),
                    ClientRequestToken=str(uuid.uuid4()),
                )
            except Exception as exc:
                if not _lost_race(exc):
                    raise
                current = _head_from_cancellation(exc)
                head = self.head(channel) if current is None else current
                # The cancellation told us the true head, so the first retry goes at once.
                # A publisher that keeps losing backs off with full jitter (capped), so a
                # crowd of racers on one hot channel does not burn write capacity in lockstep.
                if attempt:
                    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))  # noqa: S311
                continue
            self._known_heads[channel] = event.seq
            return event
        raise PublishContention(
            f"gave up after {self._max_attempts} attempts: too many publishers on {channel!r}"
        )

    def _append_items(
        self, event: Event, encoded: str, head: int, now: float
    ) -> list[dict[str, Any]]:
        head_key = {schema.CHANNEL: {"S": event.channel}, schema.SEQ: {"N": str(schema.HEAD_SEQ)}}
        if head == 0:
            head_condition = f"attribute_not_exists({schema.HEAD})"
            values = {":new": {"N": str(event.seq)}}
        else:
            head_condition = f"{schema.HEAD} = :old"
            values = {":new": {"N": str(event.seq)}, ":old": {"N": str(head)}}
        expires_at = int(now) + self.settings.retention_seconds
        return [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": head_key,
                    "UpdateExpression": f"SET {schema.HEAD} = :new",
                    "ConditionExpression": head_condition,
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {
                        schema.CHANNEL: {"S": event.channel},
                        schema.SEQ: {"N": str(event.seq)},
                        schema.EVENT: {"S": encoded},
                        schema.EXPIRES_AT: {"N": str(expires_at)},
                    },
                    "ConditionExpression": f"attribute_not_exists({schema.SEQ})",
                }
            },
        ]

    # --- read ---------------------------------------------------------------------------------

    def head(self, channel: str) -> int:
        """The channel's last assigned seq (0 before its first event)."""
        item = self.client.get_item(
            TableName=self.table_name,
            Key={schema.CHANNEL: {"S": channel}, schema.SEQ: {"N": str(schema.HEAD_SEQ)}},
            ConsistentRead=True,
        ).get("Item")
        return int(item[schema.HEAD]["N"]) if item else 0

    def read(self, channel: str, after: int, limit: int = MAX_READ_LIMIT) -> ReadResult:
        """Return up to ``limit`` events of ``channel`` with seq > ``after``, in seq order."""
        validate_channel(channel)
        after = parse_cursor(after)
        validate_limit(limit)
        for _ in range(3):
            events, head = self._query(channel, after, limit)
            if head is not None and after > head:
                # A cursor from the future (a wiped table, another environment): start over.
                return self._reset(self.read(channel, 0, limit), head)
            first_missing = (
                events[0].seq > after + 1 if events else head is not None and head > after
            )
            if not first_missing:
                return ReadResult(
                    channel=channel,
                    events=events,
                    next=events[-1].seq if events else after,
                    head=head,
                )
            if not self._is_retained(channel, after + 1):
                oldest = events[0].seq if events else (head or 0) + 1
                return ReadResult(
                    channel=channel,
                    events=events,
                    next=events[-1].seq if events else oldest - 1,
                    reset=True,
                    oldest=oldest,
                    head=head,
                )
            logger.warning("event %s/%d appeared during a read; reading again", channel, after + 1)
        raise RuntimeError(f"event {channel}/{after + 1} kept appearing and vanishing")

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

    def _query(self, channel: str, after: int, limit: int) -> tuple[list[Event], int | None]:
        now = int(self._clock())
        events: list[Event] = []
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
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                seq = int(item[schema.SEQ]["N"])
                if seq == schema.HEAD_SEQ:
                    return events, int(item[schema.HEAD]["N"])
                if not events and int(item[schema.EXPIRES_AT]["N"]) <= now:
                    continue  # expired history that TTL has not deleted yet
                if events and seq != events[-1].seq + 1:
                    # Never hand out N+1 without N: stop before a gap and let the next read fill it.
                    return events, None
                events.append(Event.decode(item[schema.EVENT]["S"]))
                if len(events) == limit:
                    return events, None
            if "LastEvaluatedKey" not in page:
                return events, 0 if not events else None
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _is_retained(self, channel: str, seq: int) -> bool:
        item = self.client.get_item(
            TableName=self.table_name,
            Key={schema.CHANNEL: {"S": channel}, schema.SEQ: {"N": str(seq)}},
            ConsistentRead=True,
        ).get("Item")
        return item is not None and int(item[schema.EXPIRES_AT]["N"]) > int(self._clock())


def _lost_race(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    error = response.get("Error", {})
    if error.get("Code") == "TransactionConflictException":
        return True
    if error.get("Code") != "TransactionCanceledException":
        return False
    reasons = response.get("CancellationReasons") or []
    codes = {reason.get("Code") for reason in reasons} - {"None", None}
    # Without reasons (older emulators) a cancelled append can only be a lost race.
    return not codes or codes <= _RACE_CODES


def _head_from_cancellation(exc: Exception) -> int | None:
    """The head item returned by a cancelled append, if DynamoDB sent it."""
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    item = reasons[0].get("Item") if reasons else None
    if not item:
        return None
    if schema.HEAD not in item:
        return 0
    return int(item[schema.HEAD]["N"])


def dynamodb_client() -> Any:
    """A DynamoDB client from boto3's configuration (``AWS_ENDPOINT_URL_DYNAMODB`` and friends)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        config=Config(
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=3,
            read_timeout=10,
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
