"""The WebSocket transport: an API Gateway WebSocket API, a connections table, a fan-out.

API Gateway holds the sockets and routes each frame on ``$request.body.action``
to one small function per route (``websocket_api.routes``); the connections
table remembers who listens to what; the fan-out function reads the events
table's stream and posts each new event to the channel's subscribers.

Every function gets exactly what it calls, no more: ``ping`` can only post to
this API's connections; only ``publish`` can append to the log; the fan-out can
read and delete subscriptions but not write them. Posting is granted as
``execute-api:ManageConnections`` on ``POST`` to this API's stage only.

The stream's event source mapping delivers only event INSERTs (the head item and
TTL deletions are filtered out before they cost an invocation), retries a
failing batch a bounded number of times, bisecting it to isolate the bad
record, and honours the function's ``batchItemFailures``; a record that still
fails lands in an SQS queue instead of blocking the shard. A record older than
the 2 h connection limit is dropped: every connection that could want it live
has been closed by then, and any newer one gets it from its backlog.

Auth: a Lambda REQUEST authorizer on ``$connect`` (``websocket_api.authorizer``), its
identity source the ``token`` query parameter (a browser cannot set headers on a
WebSocket): API Gateway answers 401 itself when it is missing, and otherwise passes
the authorizer's context (the token's claims) to every later route as
``requestContext.authorizer``, where ``websocket_api.routes.authorize`` checks each
subscribe and publish. Only the authorizer verifies tokens, so only it bundles
PyJWT and may read the signing secret; the route functions share a second, smaller
asset. With auth off there is no authorizer.

Access logs are opt-in: WebSocket APIs write them through the account-wide API
Gateway CloudWatch role (``AWS::ApiGateway::Account``: one setting per account and
region, shared by every REST and WebSocket API there), which a stack should not take
over unasked. ``-c apiGatewayCloudWatchRole=on`` creates that role and sets it for the
account, then logs every connect, message and disconnect as JSON (``ACCESS_LOG_FORMAT``:
no field that carries the query string, where the token travels). If the account
already has the role (another API's stack set it), ``-c websocketAccessLogs=on`` logs
without touching the account setting. Deleting this stack leaves the account setting
as it is.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_authorizers import WebSocketLambdaAuthorizer
from aws_cdk.aws_apigatewayv2_integrations import WebSocketLambdaIntegration
from constructs import Construct

from auth.config import AUTH_MODE_ENV
from eventlog import endpoints, metrics
from eventlog.config import WEBSOCKET_MAX_CONNECTION_SECONDS
from infra.access_logs import json_access_logs
from infra.app_rules import acknowledge, acknowledge_routes, nag_text
from infra.auth import Auth
from infra.edge import EdgeEndpoint, EdgeRoute, api_behavior
from infra.events_table import grant_log_append, grant_log_read, read_event_inserts
from infra.lambda_code import (
    APPLICATION_LOG_LEVEL,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    LOGGING_FORMAT,
    acknowledge_runtime,
    function_code,
)
from infra.operations import Graph, Watched, code_metric, lambda_watches
from infra.tables import table_from_spec
from websocket_api.config import (
    CONNECTIONS_TABLE_ENV,
    DEFAULT_FANOUT_WORKERS,
    FANOUT_TIMEOUT_SECONDS,
    FANOUT_WORKERS_ENV,
    IDENTITY_SOURCE,
    MANAGEMENT_ENDPOINT_ENV,
)
from websocket_api.connections import BY_CONNECTION, CONNECTIONS_TABLE
from websocket_api.frames import ACTIONS

ROUTE_TIMEOUT_SECONDS = 29
"""API Gateway's WebSocket integration timeout; a route handler has no use for longer."""

SUBSCRIBE_TIMEOUT_SECONDS = 120
"""A subscribe may post a long backlog one frame at a time. API Gateway stops waiting after
29 s, but the function runs on, and the frames it posts still arrive."""

ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "connectionId": "$context.connectionId",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "error": "$context.error.message",
}
"""No ``$context.identity`` or query-string field: the ``?token=`` of ``$connect`` stays out."""

CLOUDWATCH_ROLE_CONTEXT = "apiGatewayCloudWatchRole"
ACCESS_LOGS_CONTEXT = "websocketAccessLogs"

_FORGET = ("dynamodb:DeleteItem", "dynamodb:BatchWriteItem")


class WebSocketApi(Construct):
    """The WebSocket API, its stage, route functions, connections table and fan-out.

    :param events_table: the event log's table, with its stream of new images.
    :param stage_name: the stage, the last segment of the URL. Default: ``ws``.
    :param throttling_rate_limit: steady messages per second for the stage, connects
        included. Default: 500 (the account's default new-connection rate).
    :param throttling_burst_limit: burst for the stage. Default: 1,000.
    :param auth: how tokens are verified (``infra.auth.Auth``): the ``$connect``
        authorizer gets its settings and may read its secret.
    :param fanout_batch_size: stream records per fan-out invocation. Default: 100.
        Smaller batches suit channels with many subscribers (each record is one
        post per subscriber, and a batch must finish within the timeout).
    :param fanout_retry_attempts: retries of a failing batch before its records go
        to the failure queue. Default: 3.
    :param fanout_workers: concurrent posts per fan-out invocation. Default:
        ``websocket_api.config.DEFAULT_FANOUT_WORKERS``.
    :param removal_policy: of the connections table, which only holds live state.
        Default: DESTROY.
    :param log_retention: of every function's logs and the access logs. Default: one month.
    :param access_logs: write the stage's access logs. Default: False (see the module
        docstring: they need the account's API Gateway CloudWatch role).

    Attributes: ``api``, ``stage``, ``url`` (the API's own ``wss://...``),
    ``edge_routes`` and ``edge_endpoints`` (``/<stage>`` at the edge), ``connections_table``,
    ``route_functions`` (route key -> function), ``authorizer_function`` (None with
    auth off), ``fanout_function``, ``fanout_failures`` (the on-failure queue),
    ``fanout_source``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        events_table: dynamodb.ITable,
        auth: Auth,
        stage_name: str = "ws",
        throttling_rate_limit: int = 500,
        throttling_burst_limit: int = 1_000,
        fanout_batch_size: int = 100,
        fanout_retry_attempts: int = 3,
        fanout_workers: int = DEFAULT_FANOUT_WORKERS,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        access_logs: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self._log_retention = log_retention
        self.access_logs: logs.LogGroup | None = None
        if access_logs:
            self.access_logs = logs.LogGroup(
                self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
            )
        # One asset for every route and the fan-out: the same packages, no dependencies.
        self._code = function_code(packages=("auth", "eventlog", "websocket_api"))

        self.connections_table = table_from_spec(
            self,
            "Connections",
            spec=CONNECTIONS_TABLE,
            removal_policy=removal_policy,
            point_in_time_recovery=False,
        )
        acknowledge(
            self.connections_table,
            "AwsSolutions-DDB3",
            "Live state only (who listens now): a restored copy would name closed connections.",
        )
        environment = {
            "EVENTS_TABLE_NAME": events_table.table_name,
            CONNECTIONS_TABLE_ENV: self.connections_table.table_name,
            # The routes check claims unless auth is off; they never see the secret.
            AUTH_MODE_ENV: auth.config.mode,
        }

        self.route_functions: dict[str, lambda_.Function] = {}
        for route_key in ("$connect", "$disconnect", "$default", *ACTIONS):
            name = route_key.lstrip("$")
            self.route_functions[route_key] = self._function(
                f"{name.capitalize()}Handler",  # never "Default": that id means the default child
                handler=f"websocket_api.routes.{name}",
                description=f"WebSocket route {route_key}",
                timeout=SUBSCRIBE_TIMEOUT_SECONDS if name == "subscribe" else ROUTE_TIMEOUT_SECONDS,
                memory_size=256,
                environment=environment,
            )

        self.authorizer_function: lambda_.Function | None = None
        connect_authorizer: WebSocketLambdaAuthorizer | None = None
        if auth.config.mode != "off":
            self.authorizer_function = self._function(
                "ConnectAuthorizer",
                handler="websocket_api.authorizer.handler",
                description="WebSocket $connect authorizer: verifies ?token=",
                timeout=ROUTE_TIMEOUT_SECONDS,
                memory_size=256,
                environment=dict(auth.environment),
                code=function_code(
                    packages=("auth", "eventlog", "websocket_api"),
                    dependency_group=("websocket", *auth.dependency_groups),
                ),
            )
            auth.grant_verify(self.authorizer_function)
            connect_authorizer = WebSocketLambdaAuthorizer(
                "TokenAuthorizer", self.authorizer_function, identity_source=[IDENTITY_SOURCE]
            )

        def integration(route_key: str) -> WebSocketLambdaIntegration:
            name = route_key.lstrip("$").capitalize()
            return WebSocketLambdaIntegration(f"{name}Integration", self.route_functions[route_key])

        self.api = apigwv2.WebSocketApi(
            self,
            "Api",
            api_name=f"{Stack.of(self).stack_name}-websocket",
            description="WebSocket transport of the event log",
            route_selection_expression="$request.body.action",
            connect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integration("$connect"), authorizer=connect_authorizer
            ),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(
                integration=integration("$disconnect")
            ),
            default_route_options=apigwv2.WebSocketRouteOptions(
                integration=integration("$default")
            ),
        )
        for action in ACTIONS:
            self.api.add_route(action, integration=integration(action))
        acknowledge_routes(
            self.api,
            "API Gateway runs authorizers on $connect only; every later route checks the "
            "claims the $connect authorizer returned (routes.authorize).",
        )

        self.stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=stage_name,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=throttling_rate_limit, burst_limit=throttling_burst_limit
            ),
            access_log_settings=(
                json_access_logs(self.access_logs, ACCESS_LOG_FORMAT) if self.access_logs else None
            ),
        )
        self.url: str = self.stage.url
        if self.access_logs is None:
            acknowledge(
                self.stage,
                "AwsSolutions-APIG1",
                "WebSocket access logs need the account-wide API Gateway CloudWatch role, "
                "which a stack takes over only when asked: -c apiGatewayCloudWatchRole=on.",
            )
        stack = Stack.of(self)
        # The stage's path is the same at the edge: CloudFront forwards /<stage> unchanged.
        self.edge_routes: tuple[EdgeRoute, ...] = (
            EdgeRoute(
                path_pattern=f"/{stage_name}",
                behavior=api_behavior(
                    origins.HttpOrigin(
                        f"{self.api.api_id}.execute-api.{stack.region}.{stack.url_suffix}",
                        protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                    ),
                    methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                ),
            ),
        )
        self.edge_endpoints: tuple[EdgeEndpoint, ...] = (
            EdgeEndpoint(output_key=endpoints.WEBSOCKET_URL, scheme="wss", path=f"/{stage_name}"),
        )

        self.fanout_function = self._function(
            "Fanout",
            handler="websocket_api.fanout.handler",
            description="WebSocket fan-out: events table stream -> subscribers",
            timeout=FANOUT_TIMEOUT_SECONDS,
            # Memory buys CPU, and concurrent posts are CPU-bound in botocore: 1,769 MB is one
            # full vCPU (bench/websocket_fanout.py shows where more threads stop helping).
            memory_size=1769,
            environment={
                CONNECTIONS_TABLE_ENV: self.connections_table.table_name,
                MANAGEMENT_ENDPOINT_ENV: self.stage.callback_url,
                FANOUT_WORKERS_ENV: str(fanout_workers),
            },
        )
        self.fanout_source, self.fanout_failures = read_event_inserts(
            self,
            "Fanout",
            table=events_table,
            function=self.fanout_function,
            batch_size=fanout_batch_size,
            retry_attempts=fanout_retry_attempts,
            # An event older than the longest connection has no subscriber left who was
            # there when it was published.
            max_record_age=Duration.seconds(WEBSOCKET_MAX_CONNECTION_SECONDS),
        )

        self._grant(events_table, stage_name)

        functions = {
            **{f"WebSocket {key}": f for key, f in self.route_functions.items()},
            "WebSocket fan-out": self.fanout_function,
        }
        if self.authorizer_function is not None:
            functions["WebSocket authorizer"] = self.authorizer_function
        self.watched: tuple[Watched, ...] = (
            Watched(
                kind="fanout_failures",
                label="Fan-out failure queue",
                metric=self.fanout_failures.metric_approximate_number_of_messages_visible(),
            ),
            Watched(
                kind="iterator_age",
                label="Fan-out iterator age",
                metric=self.fanout_function.metric("IteratorAge"),
            ),
            Watched(
                kind="delivery_age",
                label="WebSocket delivery age",
                metric=code_metric(
                    metrics.DELIVERY_AGE, service=metrics.WEBSOCKET, statistic="p99"
                ),
            ),
            Watched(
                kind="websocket_integration_errors",
                label="WebSocket integration errors",
                metric=self.api.metric(
                    "IntegrationError",
                    dimensions_map={"ApiId": self.api.api_id, "Stage": stage_name},
                ),
            ),
            *(watch for label, f in functions.items() for watch in lambda_watches(label, f)),
        )
        self.graphs: tuple[Graph, ...] = fanout_graphs()

    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        timeout: int,
        memory_size: int,
        environment: dict[str, str],
        code: lambda_.Code | None = None,
    ) -> lambda_.Function:
        # Created here rather than left to Lambda, so it has a retention and goes with the stack.
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=self._log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        function = lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            code=code or self._code,
            handler=handler,
            memory_size=memory_size,
            timeout=Duration.seconds(timeout),
            log_group=log_group,
            logging_format=LOGGING_FORMAT,
            application_log_level_v2=APPLICATION_LOG_LEVEL,
            environment=environment,
        )
        acknowledge_runtime(function)
        return function

    def _grant(self, events_table: dynamodb.ITable, stage_name: str) -> None:
        table = self.connections_table
        by_connection = f"{table.table_arn}/index/{BY_CONNECTION}"
        functions = self.route_functions

        def allow(function: lambda_.IFunction, actions: tuple[str, ...], *resources: str) -> None:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=list(actions), resources=list(resources))
            )

        allow(functions["$connect"], ("dynamodb:PutItem",), table.table_arn)
        for forgets in (functions["$disconnect"], self.fanout_function):
            allow(forgets, ("dynamodb:Query",), by_connection)
            allow(forgets, _FORGET, table.table_arn)
        allow(functions["subscribe"], ("dynamodb:PutItem",), table.table_arn)
        allow(functions["unsubscribe"], ("dynamodb:DeleteItem",), table.table_arn)
        allow(self.fanout_function, ("dynamodb:Query",), table.table_arn)
        grant_log_read(events_table, functions["subscribe"])
        grant_log_read(events_table, functions["read"])
        grant_log_append(events_table, functions["publish"])

        def connections(method: str) -> str:
            return Stack.of(self).format_arn(
                service="execute-api",
                resource=self.api.api_id,
                resource_name=f"{stage_name}/{method}/@connections/*",
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )

        # Posting to this API's connections on this stage, and nothing else it could manage;
        # the fan-out also closes a connection whose token has expired (DELETE).
        posters = [f for key, f in functions.items() if key not in ("$connect", "$disconnect")]
        grants = [(f, "POST") for f in (*posters, self.fanout_function)]
        grants.append((self.fanout_function, "DELETE"))
        for function, method in grants:
            allow(function, ("execute-api:ManageConnections",), connections(method))
            acknowledge(
                function,
                f"AwsSolutions-IAM5[Resource::{nag_text(self, connections(method))}]",
                "Connection ids are made by API Gateway at run time: this API, this stage, "
                f"{method} ({'posting a frame' if method == 'POST' else 'closing'}) only.",
            )
        acknowledge(
            self.fanout_function,
            "AwsSolutions-IAM5[Resource::*]",
            "dynamodb:ListStreams, which the stream's event source mapping needs, has no "
            "resource-level permissions.",
        )


def fanout_graphs() -> tuple[Graph, ...]:
    """What the fan-out says about its batches (``websocket_api.fanout``)."""
    service = metrics.WEBSOCKET

    def of(metric: metrics.Metric, statistic: str = "Sum") -> cloudwatch.Metric:
        return code_metric(metric, service=service, statistic=statistic)

    return (
        Graph(
            title="WebSocket delivery age (ms)",
            left=(of(metrics.DELIVERY_AGE, "p50"), of(metrics.DELIVERY_AGE, "p99")),
            right=(of(metrics.FANOUT_DURATION, "p99"),),
        ),
        Graph(
            title="WebSocket fan-out posts",
            left=(of(metrics.FANOUT_POSTS),),
            right=(of(metrics.FANOUT_GONE), of(metrics.FANOUT_THROTTLED)),
        ),
    )


def _account_cloudwatch_role(scope: Construct) -> Construct:
    """API Gateway's account-wide role for CloudWatch Logs, set for this account and region."""
    role = iam.Role(
        scope,
        "ApiGatewayCloudWatchRole",
        assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
        managed_policies=[
            iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
            )
        ],
    )
    acknowledge(
        role,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs]",
        "The policy API Gateway documents for its account-wide logging role.",
    )
    account = apigateway.CfnAccount(scope, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
    # Deleting the stack must not unset logging for every other API of the account.
    account.apply_removal_policy(RemovalPolicy.RETAIN)
    return account


class WebSocketStack(Stack):
    """The WebSocket transport on the event log's table, served at the edge."""

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

        def switched_on(key: str) -> bool:
            return str(self.node.try_get_context(key) or "off").lower() == "on"

        account_role = switched_on(CLOUDWATCH_ROLE_CONTEXT)
        self.websocket_api = WebSocketApi(
            self,
            "WebSocketApi",
            events_table=events_table,
            auth=auth,
            access_logs=account_role or switched_on(ACCESS_LOGS_CONTEXT),
        )
        if account_role:
            self.websocket_api.stage.node.add_dependency(_account_cloudwatch_role(self))
        self.edge_routes = self.websocket_api.edge_routes
        self.edge_endpoints = self.websocket_api.edge_endpoints
        self.watched = self.websocket_api.watched
        self.graphs = self.websocket_api.graphs
        CfnOutput(
            self,
            endpoints.CONNECTIONS_TABLE_NAME,
            value=self.websocket_api.connections_table.table_name,
        )
