"""Table definitions, written once.

The CDK constructs build their tables from these specs, and the local stack and
the tests create theirs with ``create_table_kwargs``, so the key names the code
reads and writes cannot drift from the tables that exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AttributeType = Literal["S", "N", "B"]


@dataclass(frozen=True, kw_only=True)
class Key:
    name: str
    type: AttributeType


@dataclass(frozen=True, kw_only=True)
class Index:
    """A global secondary index; it projects the keys only unless ``include`` names more."""

    name: str
    partition_key: Key
    sort_key: Key | None = None
    include: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TableSpec:
    partition_key: Key
    sort_key: Key | None = None
    ttl_attribute: str | None = None
    stream_new_images: bool = False
    indexes: tuple[Index, ...] = field(default=())

    def create_table_kwargs(self, table_name: str) -> dict[str, Any]:
        """Arguments for boto3 ``create_table`` (on-demand, like the deployed tables)."""
        keys = [self.partition_key, *([self.sort_key] if self.sort_key else [])]
        for index in self.indexes:
            keys += [index.partition_key, *([index.sort_key] if index.sort_key else [])]
        attributes = {key.name: key.type for key in keys}
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": kind} for name, kind in attributes.items()
            ],
            "KeySchema": _key_schema(self.partition_key, self.sort_key),
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": _key_schema(index.partition_key, index.sort_key),
                    "Projection": (
                        {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(index.include)}
                        if index.include
                        else {"ProjectionType": "KEYS_ONLY"}
                    ),
                }
                for index in self.indexes
            ]
        if self.stream_new_images:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        return kwargs


def _key_schema(partition_key: Key, sort_key: Key | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": partition_key.name, "KeyType": "HASH"}]
    if sort_key:
        schema.append({"AttributeName": sort_key.name, "KeyType": "RANGE"})
    return schema


def create_table(client: Any, spec: TableSpec, table_name: str) -> None:
    """Create a table from its spec and switch on TTL, for the local stack and tests."""
    client.create_table(**spec.create_table_kwargs(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name)
    if spec.ttl_attribute:
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
        )


# --- The events table -----------------------------------------------------------------------
#
# One item per seq, keyed (channel, seq), plus one head item per channel at
# seq = HEAD_SEQ that holds the channel's last assigned seq. The head sorts after
# every event, so one ascending Query "seq > cursor" returns the events after the
# cursor and, when it reaches the end, the head too: a read learns the head
# without a second request. An item of a seq is an event (it has EVENT) or a
# tombstone (it has not): a seq whose publisher never wrote it, which readers skip.

CHANNEL = "channel"
SEQ = "seq"
EVENT = "event"  # the encoded Event JSON, exactly as delivered; absent on a tombstone
HEAD = "head"  # on the head item only: the last assigned seq
EXPIRES_AT = "expires_at"  # TTL, epoch seconds; absent on the head item, which never expires
ASSIGNED_AT = "assigned_at"  # epoch seconds: when the seq was taken (on the head: the last one)
WRITER = "writer"  # on an event: a token of the publish that wrote it, to recognise its own retry
HEAD_SEQ = 10**30  # above any seq a channel can reach; DynamoDB numbers go to 38 digits

TOMBSTONE_ATTRIBUTES = (CHANNEL, SEQ, EXPIRES_AT, ASSIGNED_AT)
"""Every attribute of a tombstone: what a reader may write, and nothing that makes an event."""

EVENTS_TABLE = TableSpec(
    partition_key=Key(name=CHANNEL, type="S"),
    sort_key=Key(name=SEQ, type="N"),
    ttl_attribute=EXPIRES_AT,
    stream_new_images=True,
)
