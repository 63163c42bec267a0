"""The events table's stream, as its readers see it: which records are new events.

Two functions read the stream (a DynamoDB stream serves at most two readers per
shard at full speed: "Change data capture for DynamoDB Streams", DynamoDB
Developer Guide): the WebSocket fan-out and the SSE broker relay. Both want the
same records, events as they are inserted, and neither the head item's updates nor
tombstones, which carry no ``event`` attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog import schema

EVENT_INSERTS: list[Mapping[str, Any]] = [
    {"eventName": ["INSERT"], "dynamodb": {"NewImage": {schema.EVENT: {"S": [{"exists": True}]}}}}
]
"""An event source mapping's filter (Lambda event filtering syntax): event INSERTs only.
The stacks deploy it and the local stack applies it, from this one definition."""


def inserted_event(record: Mapping[str, Any]) -> str | None:
    """The event JSON a stream record inserts, as the log stored it; None for any other."""
    if record.get("eventName") != "INSERT":
        return None
    image = record.get("dynamodb", {}).get("NewImage", {})
    if schema.EVENT not in image:
        return None  # the head item, or a tombstone: nothing to deliver
    encoded: str = image[schema.EVENT]["S"]
    return encoded
