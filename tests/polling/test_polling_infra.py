"""The polling stack's CloudFormation: routes, limits, grants, logs and its output."""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk.assertions import Match, Template

from auth.config import AUTH_JWKS_URL_ENV, AUTH_MODE_ENV, AUTH_SECRET_ARN_ENV
from eventlog import endpoints
from eventlog.config import HTTP_API_TIMEOUT_SECONDS, MAX_LONG_POLL_SECONDS
from infra.auth import Auth, AuthConfig, AuthStack
from infra.events_table import EventLogStack
from infra.polling_api import (
    DEFAULT_RESERVED_CONCURRENCY,
    LIVE_ALIAS,
    PollingApi,
    PollingStack,
    snap_start_from,
)
from polling.config import CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS, ROUTES

JWKS_URL = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool/.well-known/jwks.json"


@pytest.fixture(scope="module")
def stacks() -> dict[str, cdk.Stack]:
    """Every stack of the module's one App, built before the first synth."""
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    # The same wiring as app.py: the table comes from the event log's stack.
    event_log = EventLogStack(app, endpoints.EVENT_LOG_STACK)
    auth = AuthStack(app, endpoints.AUTH_STACK)
    stack = PollingStack(app, endpoints.POLLING_STACK, events_table=event_log.table, auth=auth.auth)
    # And the construct alone, with every option changed from its default.
    custom = cdk.Stack(app, "CustomPolling")
    table = dynamodb.Table(
        custom,
        "Table",
        partition_key=dynamodb.Attribute(name="channel", type=dynamodb.AttributeType.STRING),
    )
    PollingApi(
        custom,
        "Api",
        events_table=table,
        auth=Auth(custom, "Auth", config=AuthConfig(mode="jwks", jwks_url=JWKS_URL)),
        cors_allow_origins=["https://demo.example"],
        throttling_rate_limit=7,
        throttling_burst_limit=9,
        memory_size=512,
        snap_start=True,
    )
    return {"default": stack, "custom": custom}


@pytest.fixture(scope="module")
def templates(stacks: dict[str, cdk.Stack]) -> dict[str, Template]:
    return {name: Template.from_stack(stack) for name, stack in stacks.items()}


@pytest.fixture(scope="module")
def template(templates: dict[str, Template]) -> Template:
    return templates["default"]


@pytest.fixture(scope="module")
def custom_template(templates: dict[str, Template]) -> Template:
    return templates["custom"]


def only(template: Template, resource_type: str) -> dict[str, Any]:
    resources = template.find_resources(resource_type)
    assert len(resources) == 1, resources
    (resource,) = resources.values()
    return dict(resource)


def test_the_api_routes_exactly_the_apps_routes_to_one_integration(template: Template) -> None:
    routes = template.find_resources("AWS::ApiGatewayV2::Route").values()

    assert {route["Properties"]["RouteKey"] for route in routes} == {
        f"{method} {path}" for method, path in ROUTES
    }
    assert all(route["Properties"]["AuthorizationType"] == "NONE" for route in routes)
    assert len({json.dumps(route["Properties"]["Target"]) for route in routes}) == 1
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"},
    )
    template.resource_count_is("AWS::Lambda::Permission", len(ROUTES))


def test_the_function_outlasts_the_longest_wait_but_not_the_api(template: Template) -> None:
    function = only(template, "AWS::Lambda::Function")["Properties"]

    assert MAX_LONG_POLL_SECONDS < function["Timeout"] < HTTP_API_TIMEOUT_SECONDS
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "polling.handler.handler"
    assert function["MemorySize"] == 256
    assert "EVENTS_TABLE_NAME" in function["Environment"]["Variables"]
    assert function["Environment"]["Variables"]["CORS_ALLOW_ORIGINS"] == "*"


def test_the_stage_is_throttled(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            # The burst is the reserve: a burst never asks for more executions than allowed.
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": 100,
                "ThrottlingBurstLimit": DEFAULT_RESERVED_CONCURRENCY,
            },
        },
    )


def test_the_function_has_reserved_concurrency_under_the_accounts_default(
    template: Template,
) -> None:
    function = only(template, "AWS::Lambda::Function")["Properties"]
    # Lambda keeps at least 100 unreserved out of a default quota of 1,000.
    assert function["ReservedConcurrentExecutions"] == DEFAULT_RESERVED_CONCURRENCY <= 1_000 - 100


def test_access_logs_are_json_without_query_strings(template: Template) -> None:
    settings = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]["AccessLogSettings"]
    log_format = json.loads(settings["Format"])

    assert log_format["path"] == "$context.path"
    assert log_format["routeKey"] == "$context.routeKey"
    assert log_format["method"] == "$context.httpMethod"
    assert log_format["status"] == "$context.status"
    assert log_format["requestId"] == "$context.requestId"
    assert log_format["latencyMs"] == "$context.responseLatency"
    variables = set(re.findall(r"\$[\w.]+", settings["Format"]))
    assert variables == set(log_format.values()), "one plain variable per field"
    for variable in variables:
        assert variable.startswith("$context."), variable
        assert not re.search(r"query|uri|header|authori|token|identity", variable, re.I), variable
    assert settings["DestinationArn"]["Fn::GetAtt"][1] == "Arn"
    log_groups = template.find_resources("AWS::Logs::LogGroup")
    assert settings["DestinationArn"]["Fn::GetAtt"][0] in log_groups
    assert all(group["Properties"]["RetentionInDays"] == 30 for group in log_groups.values())


def test_the_function_gets_only_what_the_event_log_calls(template: Template) -> None:
    policies = template.find_resources("AWS::IAM::Policy")
    statements = [
        statement
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        # The signing secret's read has its own test below.
        if "secretsmanager" not in json.dumps(statement["Action"])
    ]
    actions = {
        tuple(sorted(statement["Action"])): statement.get("Condition") for statement in statements
    }

    # Reading, and publishing: the head counter (UpdateItem) and the event (PutItem).
    assert actions == {
        ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"): None,
    }
    for statement in statements:
        assert statement["Effect"] == "Allow"
        # The table itself, imported from the event log's stack: no index, stream or wildcard.
        (resource,) = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        assert endpoints.EVENT_LOG_STACK in resource["Fn::ImportValue"]


def test_cors_is_answered_by_api_gateway(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {
            "ProtocolType": "HTTP",
            "CorsConfiguration": {
                "AllowOrigins": ["*"],
                "AllowMethods": ["GET", "POST"],
                "AllowHeaders": list(CORS_ALLOW_HEADERS),
                "ExposeHeaders": list(CORS_EXPOSE_HEADERS),
                "MaxAge": Match.any_value(),
            },
        },
    )


def test_every_route_is_served_at_the_edge(stacks: dict[str, cdk.Stack]) -> None:
    # The public endpoint is the edge's (infra.edge); the stack offers its routes there.
    stack = stacks["default"]
    assert isinstance(stack, PollingStack)
    patterns = [route.path_pattern for route in stack.edge_routes]
    assert patterns == list(dict.fromkeys(path.replace("{channel}", "*") for _, path in ROUTES))
    assert [offer.output_key for offer in stack.edge_endpoints] == [endpoints.POLLING_API_URL]
    assert not Template.from_stack(stack).find_outputs(endpoints.POLLING_API_URL)


def test_the_construct_takes_its_documented_options(custom_template: Template) -> None:
    custom_template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {"CorsConfiguration": Match.object_like({"AllowOrigins": ["https://demo.example"]})},
    )
    custom_template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {"DefaultRouteSettings": {"ThrottlingRateLimit": 7, "ThrottlingBurstLimit": 9}},
    )
    custom_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "MemorySize": 512,
            "Environment": {
                "Variables": Match.object_like({"CORS_ALLOW_ORIGINS": "https://demo.example"})
            },
        },
    )


def integration_target(template: Template) -> str:
    """What the one integration invokes: the logical id its URI references."""
    uri = only(template, "AWS::ApiGatewayV2::Integration")["Properties"]["IntegrationUri"]
    return str(uri.get("Ref") or uri["Fn::GetAtt"][0])


def test_by_default_the_api_invokes_the_function_without_snapstart(template: Template) -> None:
    function = only(template, "AWS::Lambda::Function")["Properties"]
    assert "SnapStart" not in function
    assert not template.find_resources("AWS::Lambda::Version")
    assert not template.find_resources("AWS::Lambda::Alias")
    (function_id,) = template.find_resources("AWS::Lambda::Function")
    assert integration_target(template) == function_id


def test_with_snapstart_the_api_invokes_an_alias_of_the_published_version(
    custom_template: Template,
) -> None:
    function = only(custom_template, "AWS::Lambda::Function")["Properties"]
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    # An old version would keep its snapshot cached (and billed): it goes with the update.
    version = only(custom_template, "AWS::Lambda::Version")
    assert version["DeletionPolicy"] == "Delete"
    (version_id,) = custom_template.find_resources("AWS::Lambda::Version")
    alias = only(custom_template, "AWS::Lambda::Alias")["Properties"]
    assert alias["Name"] == LIVE_ALIAS
    assert alias["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    (alias_id,) = custom_template.find_resources("AWS::Lambda::Alias")
    assert integration_target(custom_template) == alias_id
    # API Gateway may invoke the alias, which is what it calls.
    permissions = custom_template.find_resources("AWS::Lambda::Permission").values()
    assert {json.dumps(p["Properties"]["FunctionName"]) for p in permissions} == {
        json.dumps({"Ref": alias_id})
    }


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("", False), ("off", False), ("ON", True)]
)
def test_the_snapstart_context_is_on_or_off(value: object, expected: bool) -> None:
    assert snap_start_from(value) is expected


def test_the_snapstart_context_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="pollingSnapStart"):
        snap_start_from("yes")


def test_the_function_verifies_tokens_with_the_shared_secret_and_may_only_read_it(
    template: Template,
) -> None:
    function = only(template, "AWS::Lambda::Function")["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables[AUTH_MODE_ENV] == "hs256"
    secret = variables[AUTH_SECRET_ARN_ENV]
    assert "AuthSigningSecret" in json.dumps(secret)  # the auth stack's secret, by reference
    statements = [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager" in json.dumps(statement["Action"])
    ]
    assert statements == [
        {
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Effect": "Allow",
            "Resource": secret,
        }
    ]


def test_with_jwks_the_function_gets_the_key_set_url_and_no_secret(
    custom_template: Template,
) -> None:
    function = only(custom_template, "AWS::Lambda::Function")["Properties"]
    variables = function["Environment"]["Variables"]
    assert (variables[AUTH_MODE_ENV], variables[AUTH_JWKS_URL_ENV]) == ("jwks", JWKS_URL)
    assert AUTH_SECRET_ARN_ENV not in variables
    assert "secretsmanager" not in json.dumps(custom_template.to_json())
