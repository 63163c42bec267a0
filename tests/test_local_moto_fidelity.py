"""``local.moto_fidelity``: the patches answer exactly as moto would, at DynamoDB's cost."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from eventlog import schema

QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "#c = :c"},
    {"KeyConditionExpression": "#c = :c AND #s > :n", "Limit": 7},
    {"KeyConditionExpression": "#c = :c AND #s < :n", "ScanIndexForward": False, "Limit": 1},
    {"KeyConditionExpression": "#c = :c AND #s BETWEEN :n AND :m"},
    {"KeyConditionExpression": "#c = :c AND #s >= :n", "FilterExpression": "attribute_exists(#e)"},
]


def _query(dynamodb: Any, channel: str, shape: dict[str, Any]) -> list[Any]:
    """Every page of one query, followed by ``LastEvaluatedKey`` as a reader does."""
    names = {"#c": schema.CHANNEL, "#s": schema.SEQ, "#e": schema.EVENT}
    values = {":c": {"S": channel}, ":n": {"N": "5"}, ":m": {"N": "30"}}
    expression = shape["KeyConditionExpression"] + shape.get("FilterExpression", "")
    pages: list[Any] = []
    start: dict[str, Any] | None = None
    while True:
        page = dynamodb.query(
            TableName="events",
            ExpressionAttributeNames={k: v for k, v in names.items() if k in expression},
            ExpressionAttributeValues={k: v for k, v in values.items() if k in expression},
            ConsistentRead=True,
            **shape,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        pages.append((page["Items"], page.get("LastEvaluatedKey")))
        start = page.get("LastEvaluatedKey")
        if not start or len(pages) > 50:
            return pages


@pytest.fixture
def filled(dynamodb: Any, events_table: str) -> Any:
    """Three channels, interleaved, with a tombstone-like item (no event) in one."""
    for seq in range(1, 41):
        for channel in ("a", "b", "c"):
            item = {schema.CHANNEL: {"S": channel}, schema.SEQ: {"N": str(seq)}}
            if not (channel == "b" and seq == 12):
                item[schema.EVENT] = {"S": f"{channel}{seq}"}
            dynamodb.put_item(TableName=events_table, Item=item)
    return dynamodb


@pytest.mark.parametrize("shape", QUERIES, ids=lambda shape: shape["KeyConditionExpression"])
def test_a_partition_query_answers_as_moto_does(filled: Any, shape: dict[str, Any]) -> None:
    from local.moto_fidelity import partition_queries

    for channel in ("a", "b", "missing"):
        expected = _query(filled, channel, shape)
        with partition_queries():
            assert _query(filled, channel, shape) == expected


def test_a_partition_query_does_not_read_the_whole_table(filled: Any) -> None:
    from moto.dynamodb.models.table import Table

    from local.moto_fidelity import partition_queries

    def whole_table(self: Any) -> Any:
        raise AssertionError("the query listed every item of the table")

    with partition_queries(), mock.patch.object(Table, "all_items", whole_table):
        pages = _query(filled, "a", QUERIES[1])
    assert [item[schema.SEQ]["N"] for item in pages[0][0]] == [str(n) for n in range(6, 13)]
    # Without the patch, moto's query does list the table: the check above can fail.
    with (
        mock.patch.object(Table, "all_items", whole_table),
        pytest.raises(Exception, match="listed every item"),
    ):
        _query(filled, "a", QUERIES[1])


# --- cheap_transaction_rollback -------------------------------------------------------------


def _streamed_table(dynamodb: Any, name: str, *, sort_key: bool) -> str:
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "N"})
    table = dynamodb.create_table(
        TableName=name,
        KeySchema=keys,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(table["TableDescription"]["LatestStreamArn"])


def _key(pk: str, sort_key: bool) -> dict[str, Any]:
    return {"pk": {"S": pk}, **({"sk": {"N": "1"}} if sort_key else {})}


def _put(table: str, pk: str, sort_key: bool, *, new: bool = True) -> dict[str, Any]:
    put: dict[str, Any] = {"TableName": table, "Item": {**_key(pk, sort_key), "v": {"S": pk}}}
    if new:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    return {"Put": put}


def _cancel(dynamodb: Any, table: str, sort_key: bool) -> None:
    """A transaction whose first Put passes its condition and whose second fails it."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(
            TransactItems=[_put(table, "phantom", sort_key), _put(table, "kept", sort_key)]
        )


class _Stream:
    """One reader of a table's stream, from its start, as the local mapping reads it."""

    def __init__(self, arn: str) -> None:
        import boto3

        self.client = boto3.client("dynamodbstreams")
        shard = self.client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        self.iterator = self.client.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def read(self) -> list[tuple[str, str]]:
        page = self.client.get_records(ShardIterator=self.iterator)
        self.iterator = page["NextShardIterator"]
        return [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in page["Records"]]


@pytest.mark.parametrize("sort_key", [True, False], ids=["hash-and-range", "hash-only"])
def test_a_cancelled_transaction_changes_nothing_and_streams_nothing(
    dynamodb: Any, sort_key: bool
) -> None:
    from local.moto_fidelity import cheap_transaction_rollback

    arn = _streamed_table(dynamodb, "t", sort_key=sort_key)
    with cheap_transaction_rollback():
        dynamodb.transact_write_items(TransactItems=[_put("t", "kept", sort_key)])
        stream = _Stream(arn)  # an iterator handed out before the cancelled transaction
        assert stream.read() == [("INSERT", "kept")]
        _cancel(dynamodb, "t", sort_key)
        items = dynamodb.scan(TableName="t")["Items"]
        assert [item["pk"]["S"] for item in items] == ["kept"]  # rolled back
        dynamodb.put_item(TableName="t", Item={**_key("after", sort_key), "v": {"S": "x"}})
        # No phantom of the cancelled Put; and the old iterator still follows the stream
        # (the shallow copy shares the shard: a deep one would leave this reader behind).
        assert stream.read() == [("INSERT", "after")]


def test_without_the_patch_a_reader_sees_the_cancelled_put_and_then_nothing(
    dynamodb: Any,
) -> None:
    """What the patch corrects (if moto fixes both, the patch's cut and this test can go):
    the reader's shard keeps the cancelled Put's record, and the restored table streams
    to a deep copy of the shard that the reader never sees."""
    arn = _streamed_table(dynamodb, "t", sort_key=True)
    dynamodb.transact_write_items(TransactItems=[_put("t", "kept", True)])
    stream = _Stream(arn)
    assert stream.read() == [("INSERT", "kept")]
    _cancel(dynamodb, "t", True)
    dynamodb.put_item(TableName="t", Item={**_key("after", True), "v": {"S": "x"}})
    assert stream.read() == [("INSERT", "phantom")]


def test_the_local_dynamodb_keeps_connections_alive() -> None:
    """DynamoDB's endpoints keep a connection open between requests and botocore reuses it;
    ``local.dynamodb`` does too (werkzeug's server, which moto ships, closes every one)."""
    import http.client
    from urllib.parse import urlsplit

    from local.servers import child_service

    with child_service("local.dynamodb", 0, name="DynamoDB (moto)") as url:
        address = urlsplit(url)
        connection = http.client.HTTPConnection(address.netloc, timeout=10)
        local_ports = []
        for _ in range(3):
            connection.request(
                "POST",
                "/",
                body="{}",
                headers={
                    "Content-Type": "application/x-amz-json-1.0",
                    "X-Amz-Target": "DynamoDB_20120810.ListTables",
                    # moto reads the region from the credential scope; it checks no signature.
                    "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/"
                    "dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                },
            )
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, body
            assert response.getheader("Connection", "").lower() != "close"
            assert connection.sock is not None
            local_ports.append(connection.sock.getsockname()[1])
        connection.close()
    assert len(set(local_ports)) == 1, f"a new connection per request: {local_ports}"
