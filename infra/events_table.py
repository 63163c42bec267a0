"""The event log's table, and the stack that owns it.

Every transport reads this one table, so it lives in its own stack: a transport
stack can be deleted or redeployed without touching the history.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_lambda_event_sources import DynamoEventSource, SqsDlq
from constructs import Construct

from eventlog import endpoints
from eventlog.schema import EVENTS_TABLE, TOMBSTONE_ATTRIBUTES
from eventlog.stream import EVENT_INSERTS
from infra.tables import table_from_spec

# What ``eventlog.EventLog`` calls, in three grants: every transport reads; every reader may
# fill an abandoned seq with a tombstone; publishers append.
LOG_READ = ("dynamodb:GetItem", "dynamodb:Query")
"""The head item, a missing seq, and reading after a cursor."""
LOG_APPEND = ("dynamodb:PutItem", "dynamodb:UpdateItem")
"""Publishing: the head counter (UpdateItem) and the event (PutItem)."""
LOG_FILL_CONDITION = {
    "ForAllValues:StringEquals": {"dynamodb:Attributes": list(TOMBSTONE_ATTRIBUTES)}
}
"""A reader's PutItem may carry a tombstone's attributes only, so it can never write an event.
Source: docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html"""


def grant_log_read(table: dynamodb.ITable, grantee: iam.IGrantable) -> None:
    """Let ``grantee`` read the log, and fill the seqs its publishers abandoned."""
    table.grant(grantee, *LOG_READ)
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["dynamodb:PutItem"],
            resources=[table.table_arn],
            conditions=LOG_FILL_CONDITION,
        )
    )


def grant_log_append(table: dynamodb.ITable, grantee: iam.IGrantable) -> None:
    """Let ``grantee`` read and publish to the log."""
    table.grant(grantee, *LOG_READ, *LOG_APPEND)


def read_event_inserts(
    scope: Construct,
    name: str,
    *,
    table: dynamodb.ITable,
    function: lambda_.IFunction,
    batch_size: int,
    retry_attempts: int,
    max_record_age: Duration,
) -> tuple[DynamoEventSource, sqs.Queue]:
    """Feed ``function`` the log's new events from its stream, as both its readers are fed.

    Event inserts only (``eventlog.stream``), invoked as records come (latency first),
    partial batch responses and bisection on errors, and what fails every retry to a
    failure queue (``<name>Failures``) whose own reader gets a dead-letter queue for a
    message it cannot process five times. Returns the source and the failure queue.
    """
    dead_letters = sqs.Queue(
        scope,
        f"{name}FailuresDeadLetters",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    failures = sqs.Queue(
        scope,
        f"{name}Failures",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=5),
    )
    source = DynamoEventSource(
        table,
        starting_position=lambda_.StartingPosition.LATEST,
        batch_size=batch_size,
        max_batching_window=Duration.seconds(0),  # latency first: invoke as records come
        retry_attempts=retry_attempts,
        bisect_batch_on_error=True,
        report_batch_item_failures=True,
        max_record_age=max_record_age,
        on_failure=SqsDlq(failures),
        filters=[lambda_.FilterCriteria.filter(pattern) for pattern in EVENT_INSERTS],
    )
    function.add_event_source(source)
    return source, failures


class EventsTable(Construct):
    """The events table: on demand, TTL retention, point-in-time recovery, a stream of new images.

    ``removal_policy`` defaults to RETAIN: deleting the stack must not delete the
    history by accident. The stream feeds the WebSocket fan-out.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = table_from_spec(
            self,
            "Table",
            spec=EVENTS_TABLE,
            removal_policy=removal_policy,
            point_in_time_recovery=True,
        )


class EventLogStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.events = EventsTable(self, "Events", removal_policy=removal_policy)
        self.table: dynamodb.ITable = self.events.table
        CfnOutput(self, endpoints.EVENTS_TABLE_NAME, value=self.table.table_name)
