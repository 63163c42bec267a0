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
