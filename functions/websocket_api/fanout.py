"""Fan-out: each new event, from the events table's stream, to every subscriber of its channel.

publish -> PutItem of the event (events table) -> DynamoDB stream -> this function
-> Query the channel's subscribers (connections table) -> one
``post_to_connection`` per subscriber.

API Gateway has no broadcast, so N receivers are N calls. They run
concurrently on a bounded thread pool (``FANOUT_WORKERS``): each call mostly
waits on the network, and a sequential loop over 1,000 receivers would take
1,000 round trips. The bound keeps one invocation from taking the whole
account's callback throttle, which all APIs share. The subscribers are read a
page at a time (``FANOUT_PAGE_SIZE``), the next page while this one is posted.

Failure handling, by name:

- *410 Gone*: the client left without a ``$disconnect`` we saw (it is best
  effort). The connection and all its subscriptions are deleted in the same
  pass, and the other receivers are unaffected.
- *Throttled* (429 ``LimitExceededException``: the account's callback throttle,
  shared by every API): retried with capped backoff (``management.post``) until the
  deadline (below) is near, however many tries that takes. Failing the record
  instead would send it again to every receiver of the channel, more load on an API
  that is asking for less. Without a deadline (tests, tools) it is tried
  ``POST_MAX_ATTEMPTS`` times, as a transient failure is.
- *Transient* (5xx, a connection error): retried with backoff, ``POST_MAX_ATTEMPTS``
  times; if a receiver still fails, the record fails (below), after everyone else
  got it.
- *Refused for good* (403, 413): logged and skipped; retrying cannot help.
- *A failed record*: the batch response names its ``SequenceNumber``, and those of
  the records after it, in ``batchItemFailures`` and processing stops there. Lambda
  checkpoints every record before it and retries from the lowest one named, so the
  records before are not sent again, and nothing after it is delivered ahead of it
  (https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html;
  the mapping must list ``ReportBatchItemFailures``). Retries are bounded and
  bisected by the event source mapping; what still fails goes to its on-failure
  queue, so one bad record cannot block the shard.
- *The deadline*: a batch to many subscribers can take longer than the function's
  timeout. A timed-out invocation is a failed batch, retried whole: every record
  already delivered would be delivered again. So no post starts within
  ``FANOUT_DEADLINE_MARGIN_SECONDS`` of the deadline
  (``context.get_remaining_time_in_millis()``); the record being sent and the ones
  after it are reported as failures instead. Only the receivers of that one cut
  record that already had it get it twice (the client drops it by ``seq``).
- *An expired token*: a subscription remembers its token's ``exp``. From then on
  its connection gets no more events: it is sent an ``expired`` frame, closed
  (``DELETE @connections``) and forgotten. The client reconnects with a fresh token
  and resumes from its cursor. Until some event of the channel comes, nothing
  checks, so a quiet channel's expired subscriber simply receives nothing.

Order: records come in stream order, and each record is delivered to every
receiver before the next one starts. Stream order is write order, which is not
quite ``seq`` order: racing publishers take their seqs from a counter and then
write their events, so N+1 can be written, streamed and delivered just before N
(``eventlog.log``). The client's sequencer holds N+1 and fills N from the log; a
retried record can arrive twice, and clients drop duplicates by ``seq``.

Each batch ends with one metrics line (``eventlog.metrics``): posts, 410s, throttles,
the batch's duration and each event's delivery age (now minus its ``time``), which an
alarm watches. It is the batch's log line too: its outcome and size, never an event.

The stream also carries the head item (``seq = HEAD_SEQ``), tombstones (seqs
whose publisher never wrote them) and TTL deletions. The event source mapping
filters them out (INSERTs with ``NewImage.event``); ``event_frame`` checks again,
so a mapping without the filter is only slower.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from eventlog import metrics, schema, stream, structured_logs
from eventlog.events import Event
from eventlog.structured_logs import fields
from websocket_api import frames, management
from websocket_api.config import (
    FANOUT_DEADLINE_MARGIN_SECONDS,
    FANOUT_PAGE_SIZE,
    POST_MAX_ATTEMPTS,
    connections_table_name,
    fanout_workers,
)
from websocket_api.connections import Connections
from websocket_api.management import PostFailed

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Delivery:
    """What happened to one event's fan-out."""

    sent: int = 0
    gone: list[str] = field(default_factory=list)
    refused: int = 0
    failed: list[PostFailed] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    skipped: int = 0
    """Receivers not posted to because the deadline was near."""
    throttled: list[str] = field(default_factory=list)
    """A connection id per post API Gateway throttled (list.append is safe across threads)."""


class DeliveryFailed(Exception):
    """Some receivers could not be reached for now; the record must be retried."""

    delivery: Delivery | None = None
    """What was done before it failed, for the batch's metrics."""


class OutOfTime(DeliveryFailed):
    """The invocation's deadline is near; the record must be retried by the next one."""


@dataclass(frozen=True)
class Deadline:
    """When an invocation must stop posting: ``margin_seconds`` before Lambda's timeout."""

    remaining_ms: Callable[[], int] | None = None
    margin_seconds: float = FANOUT_DEADLINE_MARGIN_SECONDS

    @classmethod
    def of(cls, context: Any) -> Deadline:
        """The deadline of a Lambda ``context``; none without one (tests, tools)."""
        return cls(getattr(context, "get_remaining_time_in_millis", None))

    @property
    def known(self) -> bool:
        """Whether there is a deadline at all (a Lambda context gave one)."""
        return self.remaining_ms is not None

    def near(self) -> bool:
        return self.remaining_ms is not None and self.remaining_ms() < self.margin_seconds * 1000


_SKIPPED = "skipped"


class Fanout:
    def __init__(
        self,
        *,
        connections: Connections,
        client: Any,
        workers: int,
        max_attempts: int = POST_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connections = connections
        self.client = client
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self.workers = workers
        # Kept across invocations of a warm function: threads are cheap to keep, slow to start.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fanout-query")

    def handle(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        deadline: Deadline | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Process a stream batch in order; report the records it could not finish.

        ``request_id`` (the invocation's) goes into the batch's metrics line."""
        deadline = deadline or Deadline()
        batch = _BatchMetrics(started=time.monotonic(), request_id=request_id)
        for index, record in enumerate(records):
            try:
                if deadline.near():
                    raise OutOfTime("the deadline is near")
                target = _target(record)
                if target is not None:
                    event, frame = target
                    batch.add(self.deliver(event.channel, frame, deadline=deadline))
                    batch.ages.append((self._clock() - _epoch(event.time)) * 1000)
            except OutOfTime:
                logger.warning(
                    "stopping %.0f s before the timeout: %d of %d records left for a retry",
                    deadline.margin_seconds,
                    len(records) - index,
                    len(records),
                    extra=fields(transport="websocket", outcome="out_of_time"),
                )
                return batch.report(records, unfinished(records[index:]))
            except Exception as exc:
                sequence_number = record["dynamodb"]["SequenceNumber"]
                logger.exception(
                    "record %s failed; it and the rest will be retried",
                    sequence_number,
                    extra=fields(transport="websocket", outcome="retry", **_where(record)),
                )
                if isinstance(exc, DeliveryFailed):
                    batch.add(exc.delivery)
                return batch.report(records, unfinished(records[index:]))
        return batch.report(records, unfinished([]))

    def deliver(self, channel: str, frame: str, *, deadline: Deadline | None = None) -> Delivery:
        """Send ``frame`` to every subscriber of ``channel``; forget the ones that are gone.

        Subscribers whose token has expired get no event: their connections are closed.
        """
        deadline = deadline or Deadline()
        delivery = Delivery()
        now = self._clock()
        pages = self.connections.receivers(channel, page_size=FANOUT_PAGE_SIZE)
        for page in _read_ahead(pages, self._reader):
            live = [r.connection_id for r in page if not r.expired(now)]
            delivery.expired += [r.connection_id for r in page if r.expired(now)]
            for connection_id, outcome in zip(
                live,
                self._each(live, lambda cid: self._post(cid, frame, deadline, delivery)),
                strict=True,
            ):
                if outcome is True:
                    delivery.sent += 1
                elif outcome is False:
                    delivery.gone.append(connection_id)
                elif outcome == _SKIPPED:
                    delivery.skipped += 1
                elif isinstance(outcome, PostFailed) and outcome.transient:
                    delivery.failed.append(outcome)
                else:
                    logger.warning(
                        "%s",
                        outcome,
                        extra=fields(
                            transport="websocket",
                            outcome="refused",
                            channel=channel,
                            connection_id=connection_id,
                        ),
                    )
                    delivery.refused += 1
            if delivery.skipped:
                break  # the rest of the channel is the retry's
        # Cleanup is best effort: a connection it misses answers 410 again next time, or expires.
        for connection_id, error in zip(
            delivery.gone, self._executor.map(self._forget, delivery.gone), strict=True
        ):
            if error is not None:
                logger.warning("could not forget %s: %s", connection_id, error)
        expiries = self._executor.map(lambda cid: self._expire(cid, deadline), delivery.expired)
        for connection_id, error in zip(delivery.expired, expiries, strict=True):
            if error is not None:
                logger.warning("could not close %s, whose token expired: %s", connection_id, error)
        if delivery.skipped:
            raise OutOfTime(f"{delivery.skipped} receivers of {channel!r} left for a retry")
        if delivery.failed:
            failed = DeliveryFailed(
                f"{len(delivery.failed)} of {len(delivery.failed) + delivery.sent} receivers "
                f"of {channel!r} failed, e.g. {delivery.failed[0]}"
            )
            failed.delivery = delivery
            raise failed
        return delivery

    def _each(self, items: Sequence[str], call: Callable[[str], T]) -> list[T]:
        """``[call(item) for item in items]``, on the pool's threads, in order.

        Each thread takes the next item as soon as it is done with one, rather than one
        future per item as ``Executor.map`` makes: per post, a future's bookkeeping cost
        a third as much CPU as the post itself.
        """
        if len(items) == 1:
            # One receiver (a direct channel, a quiet one): no hand-off to another thread,
            # which in a busy process can wait up to the GIL's switch interval for its turn.
            return [call(items[0])]
        results: list[T | None] = [None] * len(items)
        positions = iter(range(len(items)))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    index = next(positions, None)
                if index is None:
                    return
                results[index] = call(items[index])

        threads = [self._executor.submit(work) for _ in range(min(self.workers, len(items)))]
        for thread in threads:
            thread.result()  # re-raises what a call raised, as Executor.map would
        return cast(list[T], results)

    def _post(
        self, connection_id: str, frame: str, deadline: Deadline, delivery: Delivery
    ) -> bool | str | PostFailed:
        if deadline.near():
            return _SKIPPED

        def count_throttle(exc: BaseException) -> None:
            if management.throttled(exc):
                delivery.throttled.append(connection_id)

        try:
            return self._send(connection_id, frame, deadline, on_transient=count_throttle)
        except PostFailed as exc:
            return exc

    def _send(
        self,
        connection_id: str,
        frame: str,
        deadline: Deadline,
        *,
        on_transient: Callable[[BaseException], None] | None = None,
    ) -> bool:
        """One frame, with the retry policy of the module docstring."""
        return management.post(
            self.client,
            connection_id,
            frame,
            max_attempts=self.max_attempts,
            sleep=self._sleep,
            out_of_time=deadline.near,
            patient_when_throttled=deadline.known,
            on_transient=on_transient,
        )

    def _expire(self, connection_id: str, deadline: Deadline) -> Exception | None:
        """Tell the connection its token expired, forget it and close it.

        Forgotten before it is closed: once its subscriptions are gone it gets nothing
        more, even if the close is refused (the function needs ``ManageConnections`` on
        ``DELETE @connections`` as well as ``POST``). The client reconnects on the frame,
        so the frame is retried as an event is: one lost to a throttle would leave the
        client waiting for events that never come.
        """
        try:
            told = self._send(connection_id, frames.expired(), deadline)
            self.connections.forget(connection_id)
            if told:
                management.close(self.client, connection_id)
        except Exception as exc:
            return exc
        return None

    def _forget(self, connection_id: str) -> Exception | None:
        try:
            self.connections.forget(connection_id)
        except Exception as exc:
            return exc
        return None


def _read_ahead(pages: Iterator[T], reader: ThreadPoolExecutor) -> Generator[T, None, None]:
    """``pages``, each next one read on ``reader`` while the caller posts to this one.

    A channel's subscribers come a Query page at a time (``FANOUT_PAGE_SIZE``): the first
    posts start after one page instead of after all of them, and each further page's
    read overlaps the posts to the one before.
    """
    coming = reader.submit(next, pages, None)
    try:
        while (page := coming.result()) is not None:
            coming = reader.submit(next, pages, None)
            yield page
    finally:
        coming.cancel()
        if not coming.cancelled():
            coming.result()  # a read in flight finishes before the pages are dropped


def unfinished(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The partial batch response naming ``records`` as failed (empty: all done)."""
    return {
        "batchItemFailures": [
            {"itemIdentifier": record["dynamodb"]["SequenceNumber"]} for record in records
        ]
    }


def event_frame(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(channel, event frame)`` for a stream record that adds an event, else None."""
    target = _target(record)
    return None if target is None else (target[0].channel, target[1])


def _target(record: Mapping[str, Any]) -> tuple[Event, str] | None:
    encoded = stream.inserted_event(record)
    if encoded is None:
        return None  # the head item, or a tombstone: nothing to deliver
    event = Event.decode(encoded)  # a record that is not an Event fails here, not at the client
    return event, frames.event(encoded)


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _where(record: Mapping[str, Any]) -> dict[str, Any]:
    """The channel and seq of a stream record, for a log line; nothing if it has none."""
    key = record.get("dynamodb", {}).get("Keys", {})
    try:
        return {"channel": key[schema.CHANNEL]["S"], "seq": int(key[schema.SEQ]["N"])}
    except (KeyError, TypeError, ValueError):
        return {}


@dataclass
class _BatchMetrics:
    """What one stream batch did, emitted as one EMF line when it ends."""

    started: float
    posts: int = 0
    gone: int = 0
    throttled: int = 0
    ages: list[float] = field(default_factory=list)

    request_id: str | None = None

    def add(self, delivery: Delivery | None) -> None:
        if delivery is not None:
            self.posts += delivery.sent
            self.gone += len(delivery.gone)
            self.throttled += len(delivery.throttled)

    def report(
        self, records: Sequence[Mapping[str, Any]], response: dict[str, Any]
    ) -> dict[str, Any]:
        failed = len(response["batchItemFailures"])
        metrics.emit(
            metrics.WEBSOCKET,
            {
                metrics.FANOUT_POSTS: self.posts,
                metrics.FANOUT_GONE: self.gone,
                metrics.FANOUT_THROTTLED: self.throttled,
                metrics.FANOUT_DURATION: (time.monotonic() - self.started) * 1000,
                metrics.DELIVERY_AGE: self.ages,
            },
            # Searchable beside the metrics: the batch's size and how it ended, no event body.
            properties=fields(
                transport="websocket",
                outcome="retry" if failed else "ok",
                request_id=self.request_id,
                records=len(records),
                failed=failed,
            ),
        )
        return response


_fanout: Fanout | None = None
structured_logs.install()


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point for the events table's stream."""
    global _fanout
    if _fanout is None:
        workers = fanout_workers()
        _fanout = Fanout(
            connections=Connections(table_name=connections_table_name()),
            client=management.client_for(
                management.configured_endpoint(), max_pool_connections=workers
            ),
            workers=workers,
        )
    return _fanout.handle(
        event.get("Records", []),
        deadline=Deadline.of(context),
        request_id=getattr(context, "aws_request_id", None),
    )
