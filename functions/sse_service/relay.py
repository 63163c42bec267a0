"""The broker relay: a Lambda function that publishes each new event to the SSE tasks' broker.

It reads the events table's stream beside the WebSocket fan-out, with the same
filter (``eventlog.stream``), and publishes each event's JSON, exactly as the log
stored it, once to ``events:<channel>`` (``sse_service.broker``). Every SSE task
with a subscriber on that channel receives it; a task with none never hears of it.

What it does not have to get right, because the log does: order (a task hands out
seqs in order, reading the log for any it has not seen) and exactly-once (a batch
retried after a failure publishes some events twice; tasks drop seqs they have
handed out). What it must not do is skip an event silently while a task is
subscribed: a publish that fails fails the rest of the batch (a partial batch
response), which Lambda retries from there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from eventlog import stream
from eventlog.config import SSE_MAX_STREAM_SECONDS
from eventlog.events import Event
from eventlog.structured_logs import fields
from sse_service.broker import broker_channel
from sse_service.settings import SSE_BROKER_URL_ENV

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

RELAY_TIMEOUT_SECONDS = 30
"""The function's timeout: a batch is a PUBLISH per event, milliseconds each."""
RELAY_MAX_RECORD_AGE_SECONDS = max(60, int(SSE_MAX_STREAM_SECONDS))
"""Records older than this are given up (to the failure queue): every stream ends within
SSE_MAX_STREAM_SECONDS, so a client that waited longer has reconnected and read the log."""


class Relay:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.published = 0

    def handle(
        self, records: Sequence[Mapping[str, Any]], *, request_id: str | None = None
    ) -> dict[str, Any]:
        """Publish each record's event; on a failure, name it and the rest for a retry."""
        published = 0
        for index, record in enumerate(records):
            try:
                encoded = stream.inserted_event(record)
                if encoded is None:
                    continue
                channel = Event.decode(encoded).channel
                self.client.publish(broker_channel(channel), encoded)
                published += 1
            except Exception:
                logger.exception(
                    "publishing record %s failed; it and the rest will be retried",
                    record.get("dynamodb", {}).get("SequenceNumber"),
                    extra=fields(transport="sse", outcome="retry", request_id=request_id),
                )
                self.published += published
                return _unfinished(records[index:])
        self.published += published
        logger.info(
            "relayed %d of %d records",
            published,
            len(records),
            extra=fields(transport="sse", outcome="ok", request_id=request_id, published=published),
        )
        return _unfinished([])


def _unfinished(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "batchItemFailures": [
            {"itemIdentifier": record["dynamodb"]["SequenceNumber"]} for record in records
        ]
    }


def broker_client(url: str) -> Any:
    """A synchronous client, kept across invocations: one connection per execution environment."""
    from redis import Redis

    return Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)


_relay: Relay | None = None


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point for the events table's stream."""
    global _relay
    if _relay is None:
        url = os.environ.get(SSE_BROKER_URL_ENV)
        if not url:
            raise RuntimeError(f"{SSE_BROKER_URL_ENV} is not set")
        _relay = Relay(broker_client(url))
    return _relay.handle(
        event.get("Records", []), request_id=getattr(context, "aws_request_id", None)
    )
