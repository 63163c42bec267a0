"""Fan-out: each new event, from the events table's stream, to every subscriber of its channel.

publish -> TransactWriteItems (events table) -> DynamoDB stream -> this function
-> Query the channel's subscribers (connections table) -> one
``post_to_connection`` per subscriber.

API Gateway has no broadcast, so N receivers are N calls. They run
concurrently on a bounded thread pool (``FANOUT_WORKERS``): each call mostly
waits on the network, and a sequential loop over 1,000 receivers would take
1,000 round trips. The bound keeps one invocation from taking the whole
account's callback throttle, which all APIs share.

Failure handling, by name:

- *410 Gone*: the client left without a ``$disconnect`` we saw (it is best
  effort). The connection and all its subscriptions are deleted in the same
  pass, and the other receivers are unaffected.
- *Throttled or transient*: retried with backoff (``management.post``); if a
  receiver still fails, the record fails (below), after everyone else got it.
- *Refused for good* (403, 413): logged and skipped; retrying cannot help.
- *A failed record*: the batch response names its ``SequenceNumber`` in
  ``batchItemFailures`` and processing stops there. Lambda checkpoints every
  record before it and retries from it, so the records before are not sent
  again, and nothing after it is delivered ahead of it. Retries are bounded and
  bisected by the event source mapping; what still fails goes to its on-failure
  queue, so one bad record cannot block the shard.

Order: records come in stream order, which for one channel (the events table's
partition key) is ``seq`` order, and each record is delivered to every receiver
before the next one starts, so each receiver gets a channel's events in order.
A retried record can arrive twice; clients drop duplicates by ``seq``.

The stream also carries the head item (``seq = HEAD_SEQ``) and TTL deletions.
The event source mapping filters them out (INSERTs with ``NewImage.event``);
``event_frame`` checks again, so a mapping without the filter is only slower.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from eventlog import schema
from eventlog.events import Event
from websocket_api import frames, management
from websocket_api.config import POST_MAX_ATTEMPTS, connections_table_name, fanout_workers
from websocket_api.connections import Connections
from websocket_api.management import PostFailed

logger = logging.getLogger(__name__)

STREAM_FILTER_PATTERNS: list[Mapping[str, Any]] = [
    {"eventName": ["INSERT"], "dynamodb": {"NewImage": {schema.EVENT: {"S": [{"exists": True}]}}}}
]
"""The event source mapping's filter (Lambda event filtering syntax): event INSERTs only.
The stack deploys it and the local stack applies it, from this one definition."""


@dataclass
class Delivery:
    """What happened to one event's fan-out."""

    sent: int = 0
    gone: list[str] = field(default_factory=list)
    refused: int = 0
    failed: list[PostFailed] = field(default_factory=list)


class DeliveryFailed(Exception):
    """Some receivers could not be reached for now; the record must be retried."""


class Fanout:
    def __init__(
        self,
        *,
        connections: Connections,
        client: Any,
        workers: int,
        max_attempts: int = POST_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connections = connections
        self.client = client
        self.max_attempts = max_attempts
        self._sleep = sleep
        # Kept across invocations of a warm function: threads are cheap to keep, slow to start.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout")

    def handle(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Process a stream batch in order; report the first record that failed."""
        for record in records:
            try:
                target = event_frame(record)
                if target is not None:
                    self.deliver(*target)
            except Exception:
                sequence_number = record["dynamodb"]["SequenceNumber"]
                logger.exception(
                    "record %s failed; it and the rest will be retried", sequence_number
                )
                # Lambda retries from the lowest failure, so naming one is enough.
                return {"batchItemFailures": [{"itemIdentifier": sequence_number}]}
        return {"batchItemFailures": []}

    def deliver(self, channel: str, frame: str) -> Delivery:
        """Send ``frame`` to every subscriber of ``channel``; forget the ones that are gone."""
        delivery = Delivery()
        for page in self.connections.subscribers(channel):
            for connection_id, outcome in zip(
                page, self._executor.map(lambda cid: self._post(cid, frame), page), strict=True
            ):
                if outcome is True:
                    delivery.sent += 1
                elif outcome is False:
                    delivery.gone.append(connection_id)
                elif outcome.transient:
                    delivery.failed.append(outcome)
                else:
                    logger.warning("%s", outcome)
                    delivery.refused += 1
        # Cleanup is best effort: a connection it misses answers 410 again next time, or expires.
        for connection_id, error in zip(
            delivery.gone, self._executor.map(self._forget, delivery.gone), strict=True
        ):
            if error is not None:
                logger.warning("could not forget %s: %s", connection_id, error)
        if delivery.failed:
            raise DeliveryFailed(
                f"{len(delivery.failed)} of {len(delivery.failed) + delivery.sent} receivers "
                f"of {channel!r} failed, e.g. {delivery.failed[0]}"
            )
        return delivery

    def _post(self, connection_id: str, frame: str) -> bool | PostFailed:
        try:
            return management.post(
                self.client,
                connection_id,
                frame,
                max_attempts=self.max_attempts,
                sleep=self._sleep,
            )
        except PostFailed as exc:
            return exc

    def _forget(self, connection_id: str) -> Exception | None:
        try:
            self.connections.forget(connection_id)
        except Exception as exc:
            return exc
        return None


def event_frame(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(channel, event frame)`` for a stream record that adds an event, else None."""
    if record.get("eventName") != "INSERT":
        return None
    image = record.get("dynamodb", {}).get("NewImage", {})
    if schema.EVENT not in image:
        return None  # the head item, created with the channel's first event
    encoded = image[schema.EVENT]["S"]
    event = Event.decode(encoded)  # a record that is not an Event fails here, not at the client
    return event.channel, frames.event(encoded)


_fanout: Fanout | None = None


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
    return _fanout.handle(event.get("Records", []))
