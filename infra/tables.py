"""DynamoDB tables built from the specs in ``eventlog.schema``: the one place keys are named."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from eventlog.schema import Key, TableSpec

_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(key: Key | None) -> dynamodb.Attribute | None:
    return dynamodb.Attribute(name=key.name, type=_TYPES[key.type]) if key else None


def table_from_spec(
    scope: Construct,
    construct_id: str,
    *,
    spec: TableSpec,
    removal_policy: RemovalPolicy,
    point_in_time_recovery: bool,
) -> dynamodb.Table:
    """An on-demand table with the spec's keys, TTL, stream and indexes."""
    table = dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(
            name=spec.partition_key.name, type=_TYPES[spec.partition_key.type]
        ),
        sort_key=_attribute(spec.sort_key),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=spec.ttl_attribute,
        stream=dynamodb.StreamViewType.NEW_IMAGE if spec.stream_new_images else None,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=point_in_time_recovery
        ),
        removal_policy=removal_policy,
    )
    for index in spec.indexes:
        table.add_global_secondary_index(
            index_name=index.name,
            partition_key=dynamodb.Attribute(
                name=index.partition_key.name, type=_TYPES[index.partition_key.type]
            ),
            sort_key=_attribute(index.sort_key),
            projection_type=(
                dynamodb.ProjectionType.INCLUDE
                if index.include
                else dynamodb.ProjectionType.KEYS_ONLY
            ),
            non_key_attributes=list(index.include) or None,
        )
    return table
