"""CDK assertions for the WebSocket transport's stack."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match, Template

from auth.config import AUTH_MODE_ENV, AUTH_SECRET_ARN_ENV
from eventlog import endpoints, schema
from eventlog.config import WEBSOCKET_MAX_CONNECTION_SECONDS
from infra import app_rules
from infra.auth import Auth, AuthConfig, AuthStack
from infra.events_table import LOG_FILL_CONDITION, EventLogStack
from infra.websocket_api import WebSocketApi, WebSocketStack
from websocket_api.config import MANAGEMENT_ENDPOINT_ENV
from websocket_api.connections import BY_CONNECTION, CONNECTIONS_TABLE

ROUTE_KEYS = {
    "$connect",
    "$disconnect",
    "$default",
    "subscribe",
    "unsubscribe",
    "publish",
    "read",
    "ping",
}


@pytest.fixture(scope="module")
def stacks() -> tuple[EventLogStack, WebSocketStack, cdk.Stack]:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    event_log = EventLogStack(app, endpoints.EVENT_LOG_STACK)
    auth = AuthStack(app, endpoints.AUTH_STACK)
    websocket = WebSocketStack(
        app, endpoints.WEBSOCKET_STACK, events_table=event_log.table, auth=auth.auth
    )
    # A second API in its own stack, deployed with auth off.
    open_stack = cdk.Stack(app, "AuthOff")
    WebSocketApi(
        open_stack,
        "Api",
        events_table=event_log.table,
        auth=Auth(open_stack, "Auth", config=AuthConfig(mode="off")),
    )
    return event_log, websocket, open_stack


@pytest.fixture(scope="module")
def template(stacks: tuple[EventLogStack, WebSocketStack, cdk.Stack]) -> Template:
    return Template.from_stack(stacks[1])


@pytest.fixture(scope="module")
def resources(template: Template) -> dict[str, Any]:
    return dict(template.to_json()["Resources"])


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def function_by_handler(resources: dict[str, Any], handler: str) -> str:
    [name] = [
        name
        for name, r in of_type(resources, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == handler
    ]
    return name


def policy_of(resources: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to ``function``'s role."""
    role = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        action = statement["Action"]
        found |= {action} if isinstance(action, str) else set(action)
    return found


# --- the API ----------------------------------------------------------------------------------


def test_the_api_routes_on_the_action_field(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.action"},
    )


def test_each_route_invokes_its_own_handler(resources: dict[str, Any]) -> None:
    routes = of_type(resources, "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == ROUTE_KEYS
    for route in routes.values():
        route_key = route["Properties"]["RouteKey"]
        integration_ref = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        integration = resources[integration_ref]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        uri = json.dumps(integration["IntegrationUri"])
        handler = f"websocket_api.routes.{route_key.lstrip('$')}"
        assert function_by_handler(resources, handler) in uri
        # Replies are posted, so no route answers with its integration's return value.
        assert "RouteResponseSelectionExpression" not in route["Properties"]


def test_the_stage_is_throttled_and_auto_deployed(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "ws",
            "AutoDeploy": True,
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": Match.any_value(),
                "ThrottlingBurstLimit": Match.any_value(),
            },
        },
    )


def test_the_stage_is_offered_at_the_edge_under_its_own_path(
    stacks: tuple[EventLogStack, WebSocketStack, cdk.Stack], resources: dict[str, Any]
) -> None:
    # The public wss:// endpoint is the edge's (infra.edge): /<stage> passes through unchanged.
    websocket = stacks[1]
    (stage,) = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    stage_name = stage["Properties"]["StageName"]
    assert endpoints.WEBSOCKET_URL not in Template.from_stack(websocket).to_json()["Outputs"]
    (offer,) = websocket.edge_endpoints
    assert (offer.output_key, offer.scheme, offer.path) == (
        endpoints.WEBSOCKET_URL,
        "wss",
        f"/{stage_name}",
    )
    assert [route.path_pattern for route in websocket.edge_routes] == [f"/{stage_name}"]


def test_connect_has_a_request_authorizer_on_the_token_query_parameter(
    resources: dict[str, Any],
) -> None:
    [authorizer] = of_type(resources, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == ["route.request.querystring.token"]
    uri = json.dumps(authorizer["Properties"]["AuthorizerUri"])
    assert function_by_handler(resources, "websocket_api.authorizer.handler") in uri
    [authorizer_id] = of_type(resources, "AWS::ApiGatewayV2::Authorizer")
    for route in of_type(resources, "AWS::ApiGatewayV2::Route").values():
        properties = route["Properties"]
        if properties["RouteKey"] == "$connect":
            assert properties["AuthorizationType"] == "CUSTOM"
            assert properties["AuthorizerId"] == {"Ref": authorizer_id}
        else:  # later routes are checked against the claims $connect returned
            assert properties.get("AuthorizationType", "NONE") == "NONE"


def test_only_the_authorizer_may_read_the_signing_secret(resources: dict[str, Any]) -> None:
    readers = []
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        handler = function["Properties"]["Handler"]
        variables = function["Properties"]["Environment"]["Variables"]
        statements = [
            s for s in policy_of(resources, name) if "secretsmanager" in json.dumps(s["Action"])
        ]
        if handler == "websocket_api.authorizer.handler":
            readers.append(handler)
            [statement] = statements
            assert "secretsmanager:GetSecretValue" in statement["Action"]
            assert "ImportValue" in json.dumps(statement["Resource"])  # the auth stack's secret
            assert "AuthSigningSecret" in json.dumps(statement["Resource"])
            assert variables[AUTH_SECRET_ARN_ENV] == statement["Resource"]
        else:
            assert statements == [], handler
            assert AUTH_SECRET_ARN_ENV not in variables
        if handler.startswith("websocket_api.routes."):
            assert variables[AUTH_MODE_ENV] == "hs256"  # so the routes insist on claims
    assert readers == ["websocket_api.authorizer.handler"]


def test_with_auth_off_connect_is_open_and_the_routes_know_it(
    stacks: tuple[EventLogStack, WebSocketStack, cdk.Stack],
) -> None:
    off = Template.from_stack(stacks[2])
    off.resource_count_is("AWS::ApiGatewayV2::Authorizer", 0)
    off.has_resource_properties(
        "AWS::ApiGatewayV2::Route", {"RouteKey": "$connect", "AuthorizationType": "NONE"}
    )
    off.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "websocket_api.routes.subscribe",
            "Environment": {"Variables": Match.object_like({AUTH_MODE_ENV: "off"})},
        },
    )
    Annotations.from_stack(stacks[2]).has_warning("*", Match.string_like_regexp("AUTH IS OFF"))


# --- the connections table -------------------------------------------------------------------


def test_the_connections_table_comes_from_its_spec_with_ttl(template: Template) -> None:
    spec = CONNECTIONS_TABLE.create_table_kwargs("unused")
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": spec["KeySchema"],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": BY_CONNECTION,
                    "KeySchema": spec["GlobalSecondaryIndexes"][0]["KeySchema"],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
        },
    )
    template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Delete"})


# --- the fan-out ------------------------------------------------------------------------------


def test_the_fanout_reads_only_event_inserts_from_the_stream(template: Template) -> None:
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    pattern = {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {schema.EVENT: {"S": [{"exists": True}]}}},
    }
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::ImportValue": Match.string_like_regexp("StreamArn")},
            "FilterCriteria": {
                "Filters": [{"Pattern": json.dumps(pattern, separators=(",", ":"))}]
            },
            "StartingPosition": "LATEST",
            "BatchSize": 100,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 3,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRecordAgeInSeconds": WEBSOCKET_MAX_CONNECTION_SECONDS,
            "DestinationConfig": {
                "OnFailure": {
                    "Destination": {
                        "Fn::GetAtt": [Match.string_like_regexp("FanoutFailures"), "Arn"]
                    }
                }
            },
        },
    )


def test_the_fanout_failure_queue_is_encrypted_and_ssl_only(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 14 * 86400}
    )
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_the_fanout_knows_where_to_post(resources: dict[str, Any]) -> None:
    fanout = resources[function_by_handler(resources, "websocket_api.fanout.handler")]
    endpoint = json.dumps(fanout["Properties"]["Environment"]["Variables"][MANAGEMENT_ENDPOINT_ENV])
    assert "https://" in endpoint
    assert "/ws" in endpoint


# --- least privilege --------------------------------------------------------------------------


def manage_connections_resource(statements: list[dict[str, Any]]) -> str:
    granted = [s for s in statements if s["Action"] == "execute-api:ManageConnections"]
    return json.dumps([s["Resource"] for s in granted])


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("websocket_api.routes.connect", {"dynamodb:PutItem"}),
        (
            "websocket_api.routes.disconnect",
            {"dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"},
        ),
        (
            "websocket_api.routes.subscribe",
            {
                "dynamodb:PutItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "execute-api:ManageConnections",
            },
        ),
        (
            "websocket_api.routes.unsubscribe",
            {"dynamodb:DeleteItem", "execute-api:ManageConnections"},
        ),
        (
            "websocket_api.routes.publish",
            {
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "execute-api:ManageConnections",
            },
        ),
        (
            "websocket_api.routes.read",
            {
                "dynamodb:PutItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "execute-api:ManageConnections",
            },
        ),
        ("websocket_api.routes.ping", {"execute-api:ManageConnections"}),
        ("websocket_api.routes.default", {"execute-api:ManageConnections"}),
        (
            "websocket_api.authorizer.handler",
            {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
        ),
    ],
)
def test_each_route_function_may_do_exactly_what_it_does(
    resources: dict[str, Any], handler: str, expected: set[str]
) -> None:
    assert actions(policy_of(resources, function_by_handler(resources, handler))) == expected


def test_only_publish_can_write_events_and_subscribe_only_tombstones(
    resources: dict[str, Any],
) -> None:
    for name in of_type(resources, "AWS::Lambda::Function"):
        statements = policy_of(resources, name)
        on_events = [s for s in statements if "ImportValue" in json.dumps(s["Resource"])]
        handler = resources[name]["Properties"]["Handler"]
        unconditional = [s for s in on_events if "Condition" not in s]
        writes = actions(unconditional) & {"dynamodb:PutItem", "dynamodb:UpdateItem"}
        assert bool(writes) == (handler == "websocket_api.routes.publish"), handler
        conditional = [s for s in on_events if "Condition" in s]
        # A read of the log may tombstone a seq whose publisher died (eventlog.log).
        if handler in ("websocket_api.routes.subscribe", "websocket_api.routes.read"):
            (fill,) = conditional
            assert fill["Action"] == "dynamodb:PutItem"
            assert fill["Condition"] == LOG_FILL_CONDITION
        else:
            assert conditional == [], handler


def test_posting_is_granted_on_this_api_and_stage_only(resources: dict[str, Any]) -> None:
    api = next(iter(of_type(resources, "AWS::ApiGatewayV2::Api")))
    posters = 0
    for name in of_type(resources, "AWS::Lambda::Function"):
        statements = policy_of(resources, name)
        if "execute-api:ManageConnections" not in actions(statements):
            continue
        posters += 1
        resource = manage_connections_resource(statements)
        assert json.dumps({"Ref": api}) in resource
        assert "/ws/POST/@connections/*" in resource
        # Only the fan-out closes connections (a subscription whose token expired).
        handler = resources[name]["Properties"]["Handler"]
        closes = "/ws/DELETE/@connections/*" in resource
        assert closes == (handler == "websocket_api.fanout.handler"), handler
    assert posters == 7  # every route that replies, and the fan-out; not $connect/$disconnect


def test_the_fanout_may_read_and_delete_subscriptions_but_not_write_them(
    resources: dict[str, Any],
) -> None:
    statements = policy_of(
        resources, function_by_handler(resources, "websocket_api.fanout.handler")
    )
    granted = actions(statements)
    assert {"dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:GetRecords"} <= granted
    assert not granted & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"}
    assert "sqs:SendMessage" in granted


def test_no_statement_allows_everything(resources: dict[str, Any]) -> None:
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert "*" not in json.dumps(statement["Action"])
            if statement["Resource"] == "*":
                assert statement["Action"] == "dynamodb:ListStreams"  # has no resource form


def test_every_function_logs_to_a_group_with_retention(resources: dict[str, Any]) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert len(functions) == len(groups) == 10  # eight routes, the authorizer, the fan-out
    assert all("RetentionInDays" in g["Properties"] for g in groups.values())
    for function in functions.values():
        assert function["Properties"]["Architectures"] == ["arm64"]
        assert function["Properties"]["Runtime"] == "python3.12"


def test_access_logs_are_opt_in_and_never_hold_the_query_string(
    resources: dict[str, Any],
) -> None:
    # Default: no access logs, and the account's API Gateway setting is left alone.
    assert not of_type(resources, "AWS::ApiGateway::Account")
    (stage,) = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    assert "AccessLogSettings" not in stage["Properties"]

    app = cdk.App(context={"aws:cdk:bundling-stacks": [], "apiGatewayCloudWatchRole": "on"})
    app_rules.apply(app)  # cdk-nag too: the role and the logs must pass it
    event_log = EventLogStack(app, endpoints.EVENT_LOG_STACK)
    auth = AuthStack(app, endpoints.AUTH_STACK)
    stack = WebSocketStack(
        app, endpoints.WEBSOCKET_STACK, events_table=event_log.table, auth=auth.auth
    )
    logged = Template.from_stack(stack).to_json()["Resources"]
    (account,) = of_type(logged, "AWS::ApiGateway::Account").values()
    assert account["DeletionPolicy"] == "Retain"  # other APIs of the account rely on it
    (stage,) = of_type(logged, "AWS::ApiGatewayV2::Stage").values()
    log_format = json.loads(stage["Properties"]["AccessLogSettings"]["Format"])
    assert log_format["connectionId"] == "$context.connectionId"
    for variable in log_format.values():
        assert "querystring" not in variable.lower()
        assert "identity" not in variable
