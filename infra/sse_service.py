"""The SSE transport: a container service on ECS Fargate behind an Application Load Balancer.

SSE needs what a Lambda cannot give: a process that holds thousands of responses
open for hours. So this is the stateful tier of the three transports, and it has
the chores that come with state (see ``functions/sse_service``):

- **Idle timeout**: the ALB closes a connection that carries no bytes for
  ALB_IDLE_TIMEOUT_SECONDS (60 s); the service sends a comment heartbeat every
  SSE_HEARTBEAT_SECONDS (15 s), and the idle timeout is set explicitly so the two
  are visibly related. uvicorn's keep-alive is longer than the ALB's idle timeout.
- **Draining**: to stop a task, ECS first deregisters it: the ALB sends it no new
  streams but lets the open ones run for the deregistration delay, and ECS sends
  SIGTERM only after that delay ("Amazon ECS waits for the load balancer to report
  ... the target is in an UNUSED state", docs.aws.amazon.com/AmazonECS/latest/
  developerguide/load-balancer-connection-draining.html). A drain that began at
  SIGTERM would come too late: the streams would already have been cut. So every
  stream ends by itself within SSE_MAX_STREAM_SECONDS (at a random moment in its
  second half), and the deregistration delay is that plus a margin
  (``DEREGISTRATION_DELAY_SECONDS``): by the time the delay runs out the task's
  clients have moved to the other tasks a few at a time, resuming by
  ``Last-Event-ID``, and ECS sees the target unused early. SIGTERM still drains
  what is left (a task stopped by hand gets it first) over SSE_DRAIN_SECONDS, and
  the stop timeout leaves that 10 s of margin before SIGKILL. Nothing is lost
  either way: the log is the record, not the task.
- **Scaling on connections**: one request is one stream that lasts for hours, so
  requests per target measure churn, not load. The service logs its open-stream
  count as a CloudWatch embedded metric, and the service tracks that (per task)
  along with CPU (a broadcast to every stream is CPU-bound).
- **Deployments** replace tasks before stopping old ones (min healthy 100%), and
  the circuit breaker rolls back a deployment whose tasks do not become healthy.

Network, and what it costs: a new VPC with public subnets for the tasks (public
IPs, no NAT gateway) and isolated subnets for the load balancer. A NAT gateway
costs about $0.045/h per AZ (~$65/month for two AZs) plus $0.045/GB processed;
public IPv4 addresses cost $0.005/h each
(~$3.60/month per task). The tasks' security group admits only the ALB, so the
public IP is an exit, not an entrance.
The load balancer is internal: CloudFront reaches it as a VPC origin (``infra.edge``),
and its security group admits only CloudFront's origin-facing managed prefix list
(``com.amazonaws.global.cloudfront.origin-facing``, looked up at deploy time), so no
security group is open to the internet and every browser connection is HTTPS at the
edge. Mind that the prefix list counts as about 55 rules against the security group's
quota of 60 inbound rules. DynamoDB traffic goes through a gateway
endpoint (free, and it keeps the table's traffic off the internet). With private
subnets you would add NAT (or interface endpoints for ECR, CloudWatch Logs and STS,
about $7/month each per AZ) and drop the public IPs.

Auth: the service verifies each stream's token itself (``sse_service.app``), with the
settings and the read-only secret grant of the shared ``Auth`` on its task role.
Its access log is off, and the load balancer's access logs are not enabled: both
would record the ``?token=`` a browser's EventSource sends. Enable them only with a
log pipeline that drops query strings.

The listener is HTTP on port 80 inside the VPC; browsers speak HTTPS (and HTTP/2 or 3,
which lifts HTTP/1.1's six connections per origin, the classic SSE pitfall) to
CloudFront, which carries the stream from the VPC origin within AWS's network.

The image is built from ``functions/`` (the build context) with
``functions/sse_service/Dockerfile``; ``cdk synth`` only stages it, ``cdk deploy``
builds it (Docker needed there), for ARM64 like the tasks (Graviton: about 20%
cheaper than x86 for the same vCPU and memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from eventlog import endpoints, metrics
from eventlog.config import (
    ALB_IDLE_TIMEOUT_SECONDS,
    EVENTS_PATH,
    SSE_DRAIN_SECONDS,
    SSE_HEARTBEAT_SECONDS,
    SSE_MAX_STREAM_SECONDS,
    SSE_MAX_STREAMS,
)
from infra.app_rules import LAMBDA_BASIC_EXECUTION, acknowledge, acknowledge_cdk_singletons
from infra.auth import Auth
from infra.edge import EdgeEndpoint, EdgeRoute
from infra.events_table import grant_log_append
from infra.operations import Graph, Watched, code_metric
from infra.sse_broker import BACKPLANE_CONTEXT, SseBroker, backplane_from
from sse_service.healthcheck import COMMAND as HEALTH_COMMAND
from sse_service.settings import SSE_BROKER_URL_ENV, SSE_PORT, STREAM_PATH

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
DOCKERFILE = "sse_service/Dockerfile"  # relative to the build context, FUNCTIONS_DIR
HEALTH_PATH = "/healthz"
IMAGE_PACKAGES = ("auth", "eventlog", "sse_service")
"""What the image copies from the build context (the Dockerfile's COPY lines)."""
IMAGE_EXCLUDE = ["*", *(f"!{p}" for p in IMAGE_PACKAGES), "**/__pycache__", "**/*.pyc"]

STOP_TIMEOUT_SECONDS = SSE_DRAIN_SECONDS + 10
"""SIGTERM to SIGKILL: the drain window plus margin for the last flush (Fargate allows 120)."""

DEREGISTRATION_DELAY_SECONDS = SSE_MAX_STREAM_SECONDS + 30
"""Longer than any stream lasts, so a deregistered task's streams all end by themselves
(and their clients move elsewhere) before the load balancer would cut them."""

SSE_ORIGIN_READ_TIMEOUT_SECONDS = 30
"""CloudFront's longest wait between two packets of a stream (its default): two heartbeats."""
assert SSE_HEARTBEAT_SECONDS < SSE_ORIGIN_READ_TIMEOUT_SECONDS

CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"
"""The AWS-managed prefix list of CloudFront's addresses towards origins, VPC origins too."""

FLOW_LOGS_CONTEXT = "vpcFlowLogs"

TASKS_CONTEXT = "sseTasks"
DEFAULT_TASKS = 2
"""Two, so a stopping task's clients have somewhere to go; one is enough for a demo (its
clients then wait for the replacement task during a deploy, and resume)."""


def tasks_from(value: object) -> int:
    """``-c sseTasks=N``: the fewest tasks the service runs (it scales up from there)."""
    text = str(value if value is not None else "").strip()
    if text == "":
        return DEFAULT_TASKS
    if not text.isdigit() or not 1 <= int(text) <= 10:
        raise ValueError(f"-c {TASKS_CONTEXT}= takes a number from 1 to 10, got {value!r}")
    return int(text)


STREAMS_TARGET = int(SSE_MAX_STREAMS * 0.6)
"""Open streams per task that the scaling aims at: headroom below the cap for a task's
share of the reconnects when another task stops."""

CPU_TARGET_PERCENT = 60


class SseService(Construct):
    """The SSE service, its load balancer and its network.

    ``auth``: how tokens are verified (``infra.auth.Auth``); the tasks get its
    settings and may read its secret. ``vpc``: an existing VPC to run in (it needs
    public subnets), or None (default) for a new one as described in the module
    docstring. ``desired_count``, ``max_count``: the scaling range (default 2 to 10
    tasks, two so that a stopping task's clients have somewhere to go). ``cpu`` and
    ``memory_mib``: one task (default 1 vCPU, 2 GiB, Fargate's least for 1 vCPU:
    SSE_MAX_STREAMS streams at ~17 KB each, with headroom). ``flow_logs``: VPC flow
    logs to CloudWatch Logs (default off: they cost $0.50 per GB ingested;
    ``-c vpcFlowLogs=on`` on the stack).

    Attributes: ``vpc``, ``cluster``, ``service``, ``load_balancer`` (internal),
    ``target_group``, ``scaling``, ``edge_routes`` and ``edge_endpoints`` (what
    ``infra.edge`` serves: ``/channels/*/stream`` from this load balancer).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        events_table: dynamodb.ITable,
        auth: Auth,
        vpc: ec2.IVpc | None = None,
        desired_count: int = DEFAULT_TASKS,
        max_count: int = 10,
        cpu: int = 1024,
        memory_mib: int = 2048,
        flow_logs: bool = False,
        backplane: str = "broker",
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = vpc or ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                # The internal load balancer's: no route to or from the internet at all.
                ec2.SubnetConfiguration(
                    name="LoadBalancer", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            gateway_endpoints={
                "DynamoDb": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                )
            },
        )
        if flow_logs:
            self.vpc.add_flow_log("FlowLogs")
        else:
            acknowledge(
                self,
                "AwsSolutions-VPC7",
                "VPC flow logs cost $0.50 per GB ingested; -c vpcFlowLogs=on turns them on.",
            )
        # The push backplane (infra.sse_broker); "log": every task polls the log per channel.
        self.broker = (
            SseBroker(self, "Broker", vpc=self.vpc, events_table=events_table)
            if backplane_from(backplane) == "broker"
            else None
        )
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        metrics_service = Stack.of(self).stack_name
        self.container = self.task_definition.add_container(
            "Service",
            image=ecs.ContainerImage.from_asset(
                str(FUNCTIONS_DIR),
                file=DOCKERFILE,
                platform=ecr_assets.Platform.LINUX_ARM64,
                # The image needs three packages; nothing else may change its hash.
                exclude=IMAGE_EXCLUDE,
                ignore_mode=IgnoreMode.DOCKER,
            ),
            port_mappings=[ecs.PortMapping(container_port=SSE_PORT)],
            environment={
                "EVENTS_TABLE_NAME": events_table.table_name,
                "SSE_METRICS_INTERVAL_SECONDS": "60",
                "SSE_METRICS_SERVICE": metrics_service,
                **({SSE_BROKER_URL_ENV: self.broker.url} if self.broker else {}),
                **auth.environment,
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="sse", log_group=self.log_group),
            health_check=ecs.HealthCheck(
                command=["CMD", *HEALTH_COMMAND],
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(15),
            ),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_SECONDS),
            # One file descriptor per stream: well above SSE_MAX_STREAMS.
            ulimits=[ecs.Ulimit(name=ecs.UlimitName.NOFILE, soft_limit=65_535, hard_limit=65_535)],
            readonly_root_filesystem=True,
        )
        # Read and publish: the service serves the log's publish and page read too.
        grant_log_append(events_table, self.task_definition.task_role)
        auth.grant_verify(self.task_definition.task_role)

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(30),
        )

        if self.broker is not None:
            self.broker.allow_from(self.service.connections.security_groups[0])

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            # Not "LoadBalancer": the internet-facing one of earlier versions had that id, and
            # a replaced load balancer cannot take over its target group (one ALB per group).
            "InternalLoadBalancer",
            vpc=self.vpc,
            internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            idle_timeout=Duration.seconds(ALB_IDLE_TIMEOUT_SECONDS),
            drop_invalid_header_fields=True,
        )
        self._admit_cloudfront_only()
        acknowledge(
            self.load_balancer,
            "AwsSolutions-ELB2",
            "Access logs record the query string, where a browser's EventSource sends its "
            "token; enable them only with a pipeline that drops it.",
        )
        listener = self.load_balancer.add_listener("Http", port=80, open=False)
        self.target_group = listener.add_targets(
            "Tasks",
            port=SSE_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service],
            deregistration_delay=Duration.seconds(DEREGISTRATION_DELAY_SECONDS),
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH,
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )

        self.scaling = self.service.auto_scale_task_count(
            min_capacity=desired_count, max_capacity=max_count
        )
        self.scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=CPU_TARGET_PERCENT,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        self.scaling.scale_to_track_custom_metric(
            "OpenStreams",
            metric=code_metric(
                metrics.SSE_OPEN_STREAMS, service=metrics_service, statistic="Average"
            ),
            target_value=STREAMS_TARGET,
            # Scaling in ends streams (their clients reconnect): do it slowly.
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-IAM5[Resource::*]",
            "The execution role's ecr:GetAuthorizationToken (pulling the image) has no "
            "resource-level permissions.",
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "The environment holds names and ARNs (table, secret ARN, auth mode), never a "
            "secret: the signing key is read from Secrets Manager at run time.",
        )

        origin = origins.VpcOrigin.with_application_load_balancer(
            self.load_balancer,
            http_port=80,
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
            read_timeout=Duration.seconds(SSE_ORIGIN_READ_TIMEOUT_SECONDS),
        )

        def route(path: str, methods: cloudfront.AllowedMethods, *, fallback: bool) -> EdgeRoute:
            return EdgeRoute(
                path_pattern=path.replace("{channel}", "*"),
                behavior=cloudfront.BehaviorOptions(
                    origin=origin,
                    allowed_methods=methods,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    # Last-Event-ID, Authorization and ?token= must reach the service.
                    origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER,
                    compress=False,
                ),
                fallback=fallback,
            )

        self.edge_routes: tuple[EdgeRoute, ...] = (
            route(STREAM_PATH, cloudfront.AllowedMethods.ALLOW_GET_HEAD_OPTIONS, fallback=False),
            # The log's publish and page read, at the edge only when no polling API serves
            # them there (infra.edge.behaviors): SSE clients use this service's own URL.
            route(EVENTS_PATH, cloudfront.AllowedMethods.ALLOW_ALL, fallback=True),
        )
        self.edge_endpoints: tuple[EdgeEndpoint, ...] = (
            EdgeEndpoint(output_key=endpoints.SSE_URL),
        )
        self.watched: tuple[Watched, ...] = (
            Watched(
                kind="alb_5xx",
                label="SSE load balancer 5xx",
                metric=self.load_balancer.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT),
            ),
            Watched(
                kind="unhealthy_hosts",
                label="SSE unhealthy tasks",
                # Built from the two full names, not the target group's helper, which
                # splits the listener's ARN (a form cfn-lint cannot check across stacks).
                metric=cloudwatch.Metric(
                    namespace="AWS/ApplicationELB",
                    metric_name="UnHealthyHostCount",
                    dimensions_map={
                        "TargetGroup": self.target_group.target_group_full_name,
                        "LoadBalancer": self.load_balancer.load_balancer_full_name,
                    },
                ),
            ),
            Watched(
                kind="task_memory",
                label="SSE task memory",
                metric=self.service.metric_memory_utilization(),
            ),
            *(self.broker.watched if self.broker else ()),
        )

        def of(metric: metrics.Metric, statistic: str) -> cloudwatch.Metric:
            return code_metric(metric, service=metrics_service, statistic=statistic)

        # Summed over tasks: each task reports its own streams once a minute.
        self.graphs: tuple[Graph, ...] = (
            Graph(
                title="SSE streams",
                left=(of(metrics.SSE_OPEN_STREAMS, "Sum"), of(metrics.SSE_DRAINING, "Maximum")),
                right=(of(metrics.SSE_FEED_READERS, "Sum"),),
            ),
            Graph(title="SSE slow clients cut", left=(of(metrics.SSE_SLOW_CLIENTS_CUT, "Sum"),)),
        )

    def _admit_cloudfront_only(self) -> None:
        """Let CloudFront's origin-facing addresses, and nothing else, reach the listener.

        The managed prefix list's id differs by region and cannot be looked up at synth
        without credentials, so a custom resource finds it at deploy time.
        """
        lookup = cr.AwsCustomResource(
            self,
            "CloudFrontPrefixList",
            on_update=cr.AwsSdkCall(
                service="EC2",
                action="describeManagedPrefixLists",
                parameters={
                    "Filters": [{"Name": "prefix-list-name", "Values": [CLOUDFRONT_ORIGIN_FACING]}]
                },
                physical_resource_id=cr.PhysicalResourceId.of(CLOUDFRONT_ORIGIN_FACING),
                output_paths=["PrefixLists.0.PrefixListId"],
            ),
            # DescribeManagedPrefixLists supports no resource-level permissions.
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE
            ),
            install_latest_aws_sdk=False,
        )
        acknowledge(
            lookup,
            "AwsSolutions-IAM5[Resource::*]",
            "ec2:DescribeManagedPrefixLists has no resource-level permissions.",
        )
        acknowledge_cdk_singletons(
            Stack.of(self),
            "AWS679f53fac002430cb0da5b7982bd2287",  # AwsCustomResource's shared function
            {LAMBDA_BASIC_EXECUTION: "Lambda's own policy for its logs, no more."},
        )
        prefix_list = ec2.Peer.prefix_list(lookup.get_response_field("PrefixLists.0.PrefixListId"))
        for group in self.load_balancer.connections.security_groups:
            group.add_ingress_rule(prefix_list, ec2.Port.tcp(80), "CloudFront (VPC origin) only")


class SseStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        events_table: dynamodb.ITable,
        auth: Auth,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        flow_logs = str(self.node.try_get_context(FLOW_LOGS_CONTEXT) or "off").lower() == "on"
        self.sse = SseService(
            self,
            "Sse",
            events_table=events_table,
            auth=auth,
            flow_logs=flow_logs,
            desired_count=tasks_from(self.node.try_get_context(TASKS_CONTEXT)),
            backplane=backplane_from(self.node.try_get_context(BACKPLANE_CONTEXT)),
        )
        self.edge_routes = self.sse.edge_routes
        self.edge_endpoints = self.sse.edge_endpoints
        self.watched = self.sse.watched
        self.graphs = self.sse.graphs
