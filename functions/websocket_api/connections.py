"""Who is connected, and who listens to which channel: the connections table.

API Gateway holds the sockets; this table is the only state the WebSocket
handlers share. One table, two item kinds, generic key names:

=============  ========================  ====================  ===============================
item           ``pk``                    ``sk``                other attributes
=============  ========================  ====================  ===============================
connection     ``connection#<id>``       ``connection``        connection_id, connected_at,
                                                               expires_at
subscription   ``channel#<channel>``     ``<connection id>``   connection_id, channel,
                                                               expires_at, token_expires_at
=============  ========================  ====================  ===============================

Global secondary index ``by_connection``: partition key ``connection_id``, sort
key ``pk``, keys only. Every item carries ``connection_id``, so the index holds
one partition per connection with its connection item and all its subscriptions.

Access patterns:

- *A channel's subscribers* (fan-out, once per event): ``Query pk =
  channel#<channel>`` on the table, strongly consistent, expired items filtered
  out. Never a Scan, and on the base table rather than an index because only
  the base table reads consistently: a subscription written before the event
  was published must be seen by that event's fan-out, or the subscriber would
  miss an event that also fell after its backlog.
- *A connection's items* (``$disconnect``, and the fan-out on 410 Gone):
  ``Query connection_id = <id>`` on ``by_connection``, then delete each key. The
  index is eventually consistent; a subscription written a moment before its
  connection's cleanup can survive it, and then goes on the next fan-out (410)
  or by TTL. The connection item itself is deleted by key, never missed.
- *Subscribe / unsubscribe*: one PutItem / DeleteItem by key, idempotent.

A subscription also remembers when the token that made it expires
(``token_expires_at``, epoch seconds; absent with auth off): the fan-out delivers
nothing to it from then on, and closes its connection (``websocket_api.fanout``).

Every item expires (``expires_at``, DynamoDB TTL) when its connection must be
gone anyway, 2 h after it opened (API Gateway's limit), because ``$disconnect``
is best effort. TTL deletes lazily, so reads also skip expired items.

Tradeoff: one channel is one partition, good for ~1,000 subscription writes
per second and any number of subscribers per read (a Query pages through
1 MB at a time); a channel that needs more would shard its partition key.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eventlog.config import WEBSOCKET_MAX_CONNECTION_SECONDS
from eventlog.log import dynamodb_client
from eventlog.schema import Index, Key, TableSpec

PK = "pk"
SK = "sk"
CONNECTION_ID = "connection_id"
CHANNEL = "channel"
CONNECTED_AT = "connected_at"  # epoch milliseconds, as API Gateway reports it
EXPIRES_AT = "expires_at"  # TTL, epoch seconds
TOKEN_EXPIRES_AT = "token_expires_at"  # noqa: S105 (the subscribing token's exp, epoch s)
BY_CONNECTION = "by_connection"
CONNECTION_SK = "connection"

CONNECTIONS_TABLE = TableSpec(
    partition_key=Key(name=PK, type="S"),
    sort_key=Key(name=SK, type="S"),
    ttl_attribute=EXPIRES_AT,
    indexes=(
        Index(
            name=BY_CONNECTION,
            partition_key=Key(name=CONNECTION_ID, type="S"),
            sort_key=Key(name=PK, type="S"),
        ),
    ),
)

_BATCH_WRITE_MAX = 25  # DynamoDB BatchWriteItem limit


@dataclass(frozen=True, slots=True)
class Receiver:
    """A subscriber of a channel, and when the token it subscribed with expires."""

    connection_id: str
    token_expires_at: int | None = None

    def expired(self, now: float) -> bool:
        return self.token_expires_at is not None and now >= self.token_expires_at


def connection_pk(connection_id: str) -> str:
    return f"connection#{connection_id}"


def channel_pk(channel: str) -> str:
    # Channels cannot contain "#", so the prefixes keep the two item kinds apart.
    return f"channel#{channel}"


def expires_at(connected_at_ms: int) -> int:
    """When a connection opened at ``connected_at_ms`` is closed by API Gateway at the latest."""
    return connected_at_ms // 1000 + WEBSOCKET_MAX_CONNECTION_SECONDS


class Connections:
    """Data access for the connections table; the client is created on first use."""

    def __init__(
        self,
        *,
        table_name: str,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def connect(self, connection_id: str, *, connected_at_ms: int) -> None:
        """Record a new connection."""
        self.client.put_item(
            TableName=self.table_name,
            Item={
                PK: {"S": connection_pk(connection_id)},
                SK: {"S": CONNECTION_SK},
                CONNECTION_ID: {"S": connection_id},
                CONNECTED_AT: {"N": str(connected_at_ms)},
                EXPIRES_AT: {"N": str(expires_at(connected_at_ms))},
            },
        )

    def subscribe(
        self,
        connection_id: str,
        channel: str,
        *,
        connected_at_ms: int,
        token_expires_at: int | None = None,
    ) -> None:
        """Record that ``connection_id`` listens to ``channel`` (again: idempotent)."""
        item = {
            PK: {"S": channel_pk(channel)},
            SK: {"S": connection_id},
            CONNECTION_ID: {"S": connection_id},
            CHANNEL: {"S": channel},
            EXPIRES_AT: {"N": str(expires_at(connected_at_ms))},
        }
        if token_expires_at is not None:
            item[TOKEN_EXPIRES_AT] = {"N": str(token_expires_at)}
        self.client.put_item(TableName=self.table_name, Item=item)

    def unsubscribe(self, connection_id: str, channel: str) -> None:
        self.client.delete_item(
            TableName=self.table_name,
            Key={PK: {"S": channel_pk(channel)}, SK: {"S": connection_id}},
        )

    def subscribers(self, channel: str) -> Iterator[list[str]]:
        """The connection ids subscribed to ``channel``, one list per Query page."""
        for page in self.receivers(channel):
            yield [receiver.connection_id for receiver in page]

    def receivers(self, channel: str, *, page_size: int | None = None) -> Iterator[list[Receiver]]:
        """The subscribers of ``channel`` with their tokens' expiry, one list per Query page.

        ``page_size`` caps the items a page reads (DynamoDB's ``Limit``); None reads up to
        1 MB a page."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk",
            "FilterExpression": "#exp > :now",
            "ProjectionExpression": "#cid, #texp",
            "ExpressionAttributeNames": {
                "#pk": PK,
                "#exp": EXPIRES_AT,
                "#cid": CONNECTION_ID,
                "#texp": TOKEN_EXPIRES_AT,
            },
            "ExpressionAttributeValues": {
                ":pk": {"S": channel_pk(channel)},
                ":now": {"N": str(int(self._clock()))},
            },
            "ConsistentRead": True,
        }
        if page_size is not None:
            kwargs["Limit"] = page_size
        while True:
            page = self.client.query(**kwargs)
            receivers = [
                Receiver(
                    connection_id=item[CONNECTION_ID]["S"],
                    token_expires_at=int(item[TOKEN_EXPIRES_AT]["N"])
                    if TOKEN_EXPIRES_AT in item
                    else None,
                )
                for item in page.get("Items", [])
            ]
            if receivers:
                yield receivers
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def items_of(self, connection_id: str) -> list[dict[str, Any]]:
        """The keys of every item of a connection (from the eventually consistent index)."""
        keys: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": BY_CONNECTION,
            "KeyConditionExpression": "#cid = :cid",
            "ExpressionAttributeNames": {"#cid": CONNECTION_ID},
            "ExpressionAttributeValues": {":cid": {"S": connection_id}},
        }
        while True:
            page = self.client.query(**kwargs)
            keys += [{PK: item[PK], SK: item[SK]} for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return keys
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def forget(self, connection_id: str) -> int:
        """Delete a connection and all its subscriptions; return how many items were deleted."""
        own_key = {PK: {"S": connection_pk(connection_id)}, SK: {"S": CONNECTION_SK}}
        keys = [key for key in self.items_of(connection_id) if key != own_key]
        # By key as well: the index may not show a connection that has only just been made.
        keys.append(own_key)
        for start in range(0, len(keys), _BATCH_WRITE_MAX):
            self._delete_batch(keys[start : start + _BATCH_WRITE_MAX])
        return len(keys)

    def _delete_batch(self, keys: list[dict[str, Any]]) -> None:
        requests: list[dict[str, Any]] = [{"DeleteRequest": {"Key": key}} for key in keys]
        for attempt in range(8):
            response = self.client.batch_write_item(RequestItems={self.table_name: requests})
            requests = response.get("UnprocessedItems", {}).get(self.table_name, [])
            if not requests:
                return
            # Unprocessed items mean throttling: back off before trying the rest again.
            time.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))  # noqa: S311
        raise RuntimeError(f"could not delete {len(requests)} items of a connection")
