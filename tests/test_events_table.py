"""CDK assertions for the event log's stack."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from eventlog import endpoints, schema
from infra.events_table import EventLogStack


@pytest.fixture(scope="module")
def template() -> Template:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    return Template.from_stack(EventLogStack(app, endpoints.EVENT_LOG_STACK))


def test_the_table_has_the_keys_the_code_uses(template: Template) -> None:
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": schema.CHANNEL, "KeyType": "HASH"},
                {"AttributeName": schema.SEQ, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": Match.array_with(
                [
                    {"AttributeName": schema.CHANNEL, "AttributeType": "S"},
                    {"AttributeName": schema.SEQ, "AttributeType": "N"},
                ]
            ),
        },
    )


def test_the_table_is_on_demand_with_ttl_pitr_and_a_stream(template: Template) -> None:
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": schema.EXPIRES_AT, "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
        },
    )


def test_the_history_survives_deleting_the_stack(template: Template) -> None:
    template.has_resource(
        "AWS::DynamoDB::Table", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
    )


def test_boto3_create_table_arguments_come_from_the_same_spec() -> None:
    kwargs = schema.EVENTS_TABLE.create_table_kwargs("t")
    assert kwargs["KeySchema"] == [
        {"AttributeName": "channel", "KeyType": "HASH"},
        {"AttributeName": "seq", "KeyType": "RANGE"},
    ]
    assert kwargs["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
