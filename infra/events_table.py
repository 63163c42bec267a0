"""The event log's table, and the stack that owns it.

Every transport reads this one table, so it lives in its own stack: a transport
stack can be deleted or redeployed without touching the history.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from eventlog import endpoints
from eventlog.schema import EVENTS_TABLE
from infra.tables import table_from_spec


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
