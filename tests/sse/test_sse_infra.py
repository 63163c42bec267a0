"""CDK assertions for the SSE service: one synthesized App for the whole module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from auth.config import AUTH_MODE_ENV, AUTH_SECRET_ARN_ENV
from eventlog import endpoints, metrics
from eventlog.config import (
    ALB_IDLE_TIMEOUT_SECONDS,
    SSE_DRAIN_SECONDS,
    SSE_HEARTBEAT_SECONDS,
    SSE_MAX_STREAM_SECONDS,
)
from infra.auth import AuthStack
from infra.events_table import LOG_APPEND, LOG_READ, EventLogStack
from infra.sse_service import (
    CLOUDFRONT_ORIGIN_FACING,
    DEFAULT_TASKS,
    DEREGISTRATION_DELAY_SECONDS,
    SSE_ORIGIN_READ_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    STREAMS_TARGET,
    SseStack,
    tasks_from,
)
from sse_service.settings import SSE_PORT


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path, SseStack]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:bundling-stacks": []})
    event_log = EventLogStack(app, endpoints.EVENT_LOG_STACK)
    auth = AuthStack(app, endpoints.AUTH_STACK)
    stack = SseStack(app, endpoints.SSE_STACK, events_table=event_log.table, auth=auth.auth)
    app.synth()
    return Template.from_stack(stack), outdir, stack


@pytest.fixture(scope="module")
def stack(synth: tuple[Template, Path, SseStack]) -> SseStack:
    return synth[2]


@pytest.fixture(scope="module")
def template(synth: tuple[Template, Path, SseStack]) -> Template:
    return synth[0]


def only(template: Template, kind: str) -> dict[str, Any]:
    resources = template.find_resources(kind)
    assert len(resources) == 1, f"expected one {kind}"
    (resource,) = resources.values()
    return dict(resource)


def test_the_load_balancer_outlasts_the_heartbeat(template: Template) -> None:
    attributes = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"][
        "LoadBalancerAttributes"
    ]
    idle = {a["Key"]: a["Value"] for a in attributes}["idle_timeout.timeout_seconds"]
    assert int(idle) == ALB_IDLE_TIMEOUT_SECONDS > SSE_HEARTBEAT_SECONDS


def test_targets_are_health_checked_and_drained_for_the_drain_window(template: Template) -> None:
    group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
    assert group["HealthCheckPath"] == "/healthz"
    assert (group["Port"], group["TargetType"]) == (SSE_PORT, "ip")
    attributes = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}
    assert int(attributes["deregistration_delay.timeout_seconds"]) == DEREGISTRATION_DELAY_SECONDS


def test_the_task_runs_arm64_with_a_stop_timeout_past_the_drain(template: Template) -> None:
    task = only(template, "AWS::ECS::TaskDefinition")["Properties"]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
    (container,) = task["ContainerDefinitions"]
    assert container["StopTimeout"] == STOP_TIMEOUT_SECONDS > SSE_DRAIN_SECONDS
    assert container["HealthCheck"]["Command"] == [
        "CMD",
        "python",
        "-m",
        "sse_service.healthcheck",
    ]
    assert container["ReadonlyRootFilesystem"] is True
    names = {variable["Name"] for variable in container["Environment"]}
    assert {"EVENTS_TABLE_NAME", "SSE_METRICS_SERVICE"} <= names


def test_deployments_roll_back_and_never_drop_below_the_running_tasks(
    template: Template,
) -> None:
    service = only(template, "AWS::ECS::Service")["Properties"]
    deployment = service["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert deployment["MinimumHealthyPercent"] == 100
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"
    cluster = only(template, "AWS::ECS::Cluster")["Properties"]
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]


def test_it_scales_on_cpu_and_on_open_streams(template: Template) -> None:
    target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["MinCapacity"] >= 2
    policies = template.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    configs = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"] for p in policies.values()
    ]
    predefined = [
        c["PredefinedMetricSpecification"] for c in configs if "PredefinedMetricSpecification" in c
    ]
    custom = [c for c in configs if "CustomizedMetricSpecification" in c]
    assert predefined == [{"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}]
    (streams,) = custom
    metric = streams["CustomizedMetricSpecification"]
    assert (metric["Namespace"], metric["MetricName"]) == (
        metrics.NAMESPACE,
        metrics.SSE_OPEN_STREAMS.name,
    )
    assert streams["TargetValue"] == STREAMS_TARGET  # fmt: skip


def test_the_task_role_can_only_use_the_events_table_and_the_signing_secret(
    template: Template,
) -> None:
    roles = template.find_resources(
        "AWS::IAM::Role",
        {"Properties": {"AssumeRolePolicyDocument": {"Statement": [
            {"Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}}},
    )  # fmt: skip
    task_role = only(template, "AWS::ECS::TaskDefinition")["Properties"]["TaskRoleArn"]
    task_role_id = task_role["Fn::GetAtt"][0]
    assert task_role_id in roles
    policies = [
        p["Properties"]
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": task_role_id} in p["Properties"]["Roles"]
    ]
    (policy,) = policies
    (statement, secret) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    # Read and publish: the service serves the log's publish and page read too.
    assert sorted(statement["Action"]) == sorted((*LOG_READ, *LOG_APPEND))
    resources = statement["Resource"]
    assert all("ImportValue" in str(resource) for resource in resources)  # the events table
    assert secret["Action"] == ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    assert "AuthSigningSecret" in str(secret["Resource"])  # the auth stack's secret only
    container = only(template, "AWS::ECS::TaskDefinition")["Properties"]["ContainerDefinitions"][0]
    variables = {v["Name"]: v["Value"] for v in container["Environment"]}
    assert variables[AUTH_MODE_ENV] == "hs256"
    assert variables[AUTH_SECRET_ARN_ENV] == secret["Resource"]


def test_the_network_has_no_nat_and_a_dynamodb_gateway_endpoint(template: Template) -> None:
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    endpoint = only(template, "AWS::EC2::VPCEndpoint")["Properties"]
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert "dynamodb" in str(endpoint["ServiceName"])


def test_the_load_balancer_is_internal_and_admits_only_cloudfront(template: Template) -> None:
    balancer = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]
    assert balancer["Scheme"] == "internal"
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    for group in groups.values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule, rule
            assert "CidrIpv6" not in rule, rule
    ingress = template.find_resources("AWS::EC2::SecurityGroupIngress")
    assert not [r for r in ingress.values() if "CidrIp" in r["Properties"]]
    from_prefix_list = [
        r["Properties"] for r in ingress.values() if "SourcePrefixListId" in r["Properties"]
    ]
    assert [(r["FromPort"], r["ToPort"]) for r in from_prefix_list] == [(80, 80)]
    # Looked up at deploy time, by name, so the synth needs no credentials.
    template.has_resource_properties(
        "Custom::AWS",
        {
            "Update": Match.serialized_json(
                Match.object_like(
                    {
                        "parameters": Match.object_like(
                            {
                                "Filters": [
                                    {
                                        "Name": "prefix-list-name",
                                        "Values": [CLOUDFRONT_ORIGIN_FACING],
                                    }
                                ]
                            }
                        )
                    }
                )
            ),
        },
    )


def test_streams_end_by_themselves_before_the_deregistration_delay_runs_out() -> None:
    # ECS sends SIGTERM only once the delay is over: by then every stream must have ended.
    assert DEREGISTRATION_DELAY_SECONDS > SSE_MAX_STREAM_SECONDS
    assert SSE_ORIGIN_READ_TIMEOUT_SECONDS > SSE_HEARTBEAT_SECONDS


def test_the_stream_route_is_served_at_the_edge_uncached_and_uncompressed(
    stack: SseStack,
) -> None:
    stream, events = stack.edge_routes
    assert (stream.path_pattern, stream.fallback) == ("/channels/*/stream", False)
    # The log's publish and read: at the edge only where no polling API serves them.
    assert (events.path_pattern, events.fallback) == ("/channels/*/events", True)
    assert stream.behavior.compress is events.behavior.compress is False
    assert [offer.output_key for offer in stack.edge_endpoints] == [endpoints.SSE_URL]


def test_synth_stages_the_image_with_only_what_it_needs(
    synth: tuple[Template, Path, SseStack],
) -> None:
    _, outdir, _ = synth
    staged = [path.parent.parent for path in outdir.glob("asset.*/sse_service/Dockerfile")]
    assert len(staged) == 1, "the image asset was not staged"
    assert sorted(entry.name for entry in staged[0].iterdir()) == [
        "auth",
        "eventlog",
        "sse_service",
    ]
    assert not list(staged[0].rglob("__pycache__"))


def test_the_task_count_knob_is_checked() -> None:
    assert tasks_from(None) == DEFAULT_TASKS == 2
    assert tasks_from("1") == 1
    for bad in ("0", "11", "two"):
        with pytest.raises(ValueError, match="sseTasks"):
            tasks_from(bad)


# --- the push backplane (infra.sse_broker) --------------------------------------------------------


def test_the_broker_is_a_valkey_serverless_cache_reachable_from_the_relay_and_tasks_only(
    template: Template, stack: SseStack
) -> None:
    from infra.sse_broker import BROKER_PORT

    cache = only(template, "AWS::ElastiCache::ServerlessCache")["Properties"]
    assert cache["Engine"] == "valkey"
    assert len(cache["SubnetIds"]) >= 2  # serverless caches span availability zones
    assert stack.sse.broker is not None
    (cache_group,) = cache["SecurityGroupIds"]
    ingress = [
        rule["Properties"]
        for rule in template.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"]["GroupId"] == cache_group
    ]
    assert ingress, "nothing may reach the broker"
    assert {(rule["FromPort"], rule["ToPort"]) for rule in ingress} == {(BROKER_PORT, BROKER_PORT)}
    sources = {str(rule["SourceSecurityGroupId"]) for rule in ingress}
    assert len(sources) == 2  # the relay's group and the tasks' group, no CIDR
    assert all("CidrIp" not in rule for rule in ingress)


def test_the_tasks_get_the_broker_url_over_tls(template: Template) -> None:
    from sse_service.settings import SSE_BROKER_URL_ENV

    container = only(template, "AWS::ECS::TaskDefinition")["Properties"]["ContainerDefinitions"][0]
    variables = {v["Name"]: v["Value"] for v in container["Environment"]}
    url = variables[SSE_BROKER_URL_ENV]
    assert url["Fn::Join"][1][0] == "rediss://"  # serverless caches require TLS


def test_the_relay_reads_event_inserts_from_the_stream_inside_the_vpc(template: Template) -> None:
    from eventlog.stream import EVENT_INSERTS

    relays = template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Handler": "sse_service.relay.handler"}},
    )
    assert len(relays) == 1
    (relay_id, relay) = next(iter(relays.items()))
    assert relay["Properties"]["VpcConfig"]["SubnetIds"]
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": relay_id},
            "FilterCriteria": {"Filters": [{"Pattern": Match.serialized_json(EVENT_INSERTS[0])}]},
            "BisectBatchOnFunctionError": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": Match.object_like({})},
        },
    )


def test_sse_backplane_log_deploys_no_broker(tmp_path: Path) -> None:
    from infra.sse_broker import BACKPLANE_CONTEXT

    app = cdk.App(
        outdir=str(tmp_path),
        context={"aws:cdk:bundling-stacks": [], BACKPLANE_CONTEXT: "log"},
    )
    event_log = EventLogStack(app, endpoints.EVENT_LOG_STACK)
    auth = AuthStack(app, endpoints.AUTH_STACK)
    stack = SseStack(app, endpoints.SSE_STACK, events_table=event_log.table, auth=auth.auth)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::ElastiCache::ServerlessCache", 0)
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 0)


def test_an_unknown_backplane_is_refused() -> None:
    from infra.sse_broker import backplane_from

    assert backplane_from(None) == "broker"
    with pytest.raises(ValueError, match="sseBackplane must be one of broker, log"):
        backplane_from("kafka")
