"""The SSE service's push backplane: ElastiCache Serverless for Valkey, fed by a relay function.

Why a broker (``sse_service.broker`` has the runtime side): without one, every
SSE task polls the log for every channel it serves, four times a second, and the
bill grows with tasks x channels whether or not anything is published (at a
million clients on 100,000 channels, `make cost` priced those reads at $1.3M a
month). With one, the relay publishes each event once, each task subscribes to
the channels its clients want, and the log is read only to catch a stream up.

Why ElastiCache Serverless for Valkey: managed, no nodes to size, and priced per
use, with a floor of 100 MB of data stored (about $6 a month at $0.084 per
GB-hour) plus $0.0023 per million ECPUs, one ECPU per KB moved (Amazon
ElastiCache pricing, aws.amazon.com/elasticache/pricing, us-east-1); pub/sub
stores nothing, so the floor is the storage part of the bill. It runs cluster
mode, and runs classic ``SUBSCRIBE``/``PUBLISH`` as sharded pub/sub internally
(ElastiCache User Guide, "Overall best practices"). Encryption in transit is
always on for serverless caches: the URL is ``rediss://``.

Access is by network: the cache sits in the VPC's isolated subnets, and only the
relay's and the tasks' security groups may reach its port. (ElastiCache also
supports IAM authentication for Valkey users; a deployment that shares the VPC
with other workloads should add a user group with IAM auth.)

The relay runs in the same isolated subnets: it talks to nothing but the cache.
Lambda reads the stream for it (an event source mapping needs no network path
from the function), and a DynamoDB stream serves two readers per shard at full
speed: the WebSocket fan-out and this relay.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.app_rules import acknowledge
from infra.events_table import read_event_inserts
from infra.lambda_code import (
    APPLICATION_LOG_LEVEL,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    LOGGING_FORMAT,
    acknowledge_runtime,
    function_code,
)
from infra.operations import Watched, lambda_watches
from sse_service.relay import RELAY_MAX_RECORD_AGE_SECONDS, RELAY_TIMEOUT_SECONDS
from sse_service.settings import SSE_BROKER_URL_ENV

VPC_ACCESS_EXECUTION = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AWSLambdaVPCAccessExecutionRole]"
)

BROKER_PORT = 6379
"""ElastiCache Serverless's endpoint port for Valkey."""

BACKPLANE_CONTEXT = "sseBackplane"
"""``-c sseBackplane=log``: no broker; every task polls the log per channel (see README)."""
BACKPLANES = ("broker", "log")


def backplane_from(value: object) -> str:
    """The ``sseBackplane`` context value, checked: ``broker`` (default) or ``log``."""
    chosen = str(value or "broker").lower()
    if chosen not in BACKPLANES:
        raise ValueError(f"-c {BACKPLANE_CONTEXT} must be one of {', '.join(BACKPLANES)}")
    return chosen


class SseBroker(Construct):
    """The cache, its security group, and the relay that publishes the log's stream to it.

    ``vpc``: where the cache and the relay run (its isolated subnets, in at least two
    availability zones). ``events_table``: the log whose stream the relay reads.
    Attributes: ``cache``, ``security_group``, ``relay``, ``relay_failures``, ``url``
    (what ``SSE_BROKER_URL`` is set to), ``watched``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        events_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.security_group = ec2.SecurityGroup(
            self,
            "CacheSecurityGroup",
            vpc=vpc,
            description="The SSE broker: reachable from the relay and the SSE tasks only",
            allow_all_outbound=False,
        )
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine="valkey",
            major_engine_version="8",
            serverless_cache_name=f"{Stack.of(self).stack_name.lower()}-sse-broker"[:40],
            description="Pub/sub for the SSE tasks (sse_service.broker)",
            security_group_ids=[self.security_group.security_group_id],
            subnet_ids=subnets.subnet_ids,
        )
        self.url = f"rediss://{self.cache.attr_endpoint_address}:{self.cache.attr_endpoint_port}"

        relay_security_group = ec2.SecurityGroup(
            self,
            "RelaySecurityGroup",
            vpc=vpc,
            description="The SSE broker relay: out to the broker only",
            allow_all_outbound=False,
        )
        self.allow_from(relay_security_group)
        log_group = logs.LogGroup(
            self,
            "RelayLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.relay = lambda_.Function(
            self,
            "Relay",
            description="Publishes each new event of the log to the SSE tasks' broker",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            code=function_code(packages=("eventlog", "sse_service"), dependency_group="sse_relay"),
            handler="sse_service.relay.handler",
            memory_size=256,
            timeout=Duration.seconds(RELAY_TIMEOUT_SECONDS),
            log_group=log_group,
            logging_format=LOGGING_FORMAT,
            application_log_level_v2=APPLICATION_LOG_LEVEL,
            environment={SSE_BROKER_URL_ENV: self.url},
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets.subnets),
            security_groups=[relay_security_group],
        )
        acknowledge_runtime(self.relay)
        acknowledge(
            self.relay,
            VPC_ACCESS_EXECUTION,
            "Lambda's own policy for a function in a VPC: its logs and its network interfaces.",
        )
        acknowledge(
            self.relay,
            "AwsSolutions-IAM5[Resource::*]",
            "dynamodb:ListStreams, which the stream's event source mapping needs, has no "
            "resource-level permissions.",
        )
        # A record that fails every retry leaves its shard and sequence range in the failure
        # queue, for an operator: the tasks have long caught up from the log by then.
        _source, self.relay_failures = read_event_inserts(
            self,
            "Relay",
            table=events_table,
            function=self.relay,
            batch_size=100,
            retry_attempts=10,
            max_record_age=Duration.seconds(RELAY_MAX_RECORD_AGE_SECONDS),
        )
        self.watched: tuple[Watched, ...] = (
            *lambda_watches("SSE broker relay", self.relay),
            Watched(
                kind="iterator_age",
                label="SSE broker relay iterator age",
                metric=self.relay.metric("IteratorAge"),
            ),
        )

    def allow_from(self, peer: ec2.ISecurityGroup) -> None:
        """Let ``peer`` reach the broker's port (and only that)."""
        self.security_group.add_ingress_rule(
            peer, ec2.Port.tcp(BROKER_PORT), "to the SSE broker", remote_rule=False
        )
        if not peer.allow_all_outbound:
            peer.add_egress_rule(
                self.security_group, ec2.Port.tcp(BROKER_PORT), "to the SSE broker"
            )
