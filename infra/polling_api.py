"""The polling transport: an HTTP API in front of one Lambda function running FastAPI.

Every route of ``polling.config.ROUTES`` goes to the same function (a deliberate
"Lambdalith", see ``polling``); anything else gets API Gateway's own 404 without
invoking it. API Gateway also answers CORS preflights itself, from the same
constants the app uses under uvicorn, so a preflight never costs an invocation.

Limits that shape it: the HTTP API cuts every request at 30 s, so the longest
``wait`` is 25 s and the function's timeout sits between the two; the function
stops before API Gateway gives up, never running on for a client that has gone.
Stage throttling answers 429 with API Gateway's own body (HTTP APIs cannot
customise it), before the function or the table sees the request.

The concurrency guard. A waiting long poll holds one Lambda execution for up to
25 s, so executions = requests per second x seconds each: at the stage's 100 rps,
all long polls, that is 2,500 at once, against an account quota of 1,000 by default
("New AWS accounts have reduced concurrency", docs.aws.amazon.com/lambda/latest/dg/
limits.html) that the fan-out, the WebSocket routes and every other function of the
account share. So the function has reserved concurrency (``reserved_concurrency``,
default ``DEFAULT_RESERVED_CONCURRENCY`` = 100): at most 100 polls run at once
whatever the traffic, and the rest of the account keeps 900 (Lambda requires at
least 100 to stay unreserved, docs.aws.amazon.com/lambda/latest/dg/
API_PutFunctionConcurrency.html). The stage's burst equals the reserve, so a burst
never asks for more executions than the function may have; the steady 100 rps is
what short requests (tens of ms: a few executions) need. Long polls hit the reserve
first: 100 executions / 25 s = 4 new full-length waits per second at steady state,
about 100 clients long polling at once, which is the scale polling suits. A new
account's quota can be far below 1,000, too low to reserve anything: ``make deploy``
checks the account first (``infra.preflight``) and says what to do. Beyond
the reserve Lambda throttles the invocation and API Gateway answers with an error
the clients retry after a pause. ``-c pollingConcurrency=N`` changes the reserve;
``-c pollingConcurrency=none`` reserves nothing (an account whose quota is below the
reserve plus 100 cannot deploy one).

SnapStart (``-c pollingSnapStart=on``, default off). Lambda runs the function's init
once, when a version is published, and resumes new execution environments from a
snapshot of it instead of importing FastAPI each time (Python 3.12 and later,
published versions and aliases only: docs.aws.amazon.com/lambda/latest/dg/
snapstart.html). Turned on, the function publishes a version on every code or
configuration change, an alias (``live``) follows it, and the HTTP API invokes the
alias. Off by default for two reasons. It is billed: the snapshot is cached for as long
as the version is active, per GB of the function's memory (256 MB: about $1 a month),
and every restore is charged per GB (256 MB: about $0.035 per thousand new
environments), prices in ``bench/prices.json`` (from aws.amazon.com/lambda/pricing/),
modelled by ``python -m bench.cost --polling-snapstart``. And a restore resumes one
snapshot many times: whatever the init made that must differ per environment (random
state, connections, secrets) would be shared. ``polling.snapstart`` reseeds ``random``
after every restore and imports what the first request needs before the snapshot; the
init opens no connection and reads no secret (docs.aws.amazon.com/lambda/latest/dg/
snapstart-uniqueness.html). Old versions are deleted on update, so no stale snapshot
stays cached.

Auth: the function verifies every publish and read itself (``polling.auth``), with
the settings and the read-only secret grant of the shared ``Auth``. An HTTP API
JWT authorizer could check the signature before the function runs, but not which
channels a token grants, and not the ``?token=`` a browser may send; the function
would still have to. Access logs are JSON and record the path without its query
string: a ``?token=`` never reaches a log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from eventlog import endpoints, metrics
from eventlog.config import HTTP_API_TIMEOUT_SECONDS, MAX_LONG_POLL_SECONDS
from infra.access_logs import json_access_logs
from infra.app_rules import acknowledge_routes
from infra.auth import Auth
from infra.edge import EdgeEndpoint, EdgeRoute, api_behavior
from infra.events_table import grant_log_append
from infra.lambda_code import (
    APPLICATION_LOG_LEVEL,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    LOGGING_FORMAT,
    acknowledge_runtime,
    function_code,
)
from infra.operations import Graph, Watched, code_metric, lambda_watches
from polling.config import (
    CORS_ALLOW_HEADERS,
    CORS_ALLOW_METHODS,
    CORS_EXPOSE_HEADERS,
    CORS_MAX_AGE_SECONDS,
    DEFAULT_CORS_ALLOW_ORIGINS,
    ROUTES,
)

FUNCTION_TIMEOUT_SECONDS = HTTP_API_TIMEOUT_SECONDS - 1
"""Over the longest wait, under the HTTP API's cut-off."""
assert MAX_LONG_POLL_SECONDS < FUNCTION_TIMEOUT_SECONDS < HTTP_API_TIMEOUT_SECONDS

ORIGIN_READ_TIMEOUT_SECONDS = HTTP_API_TIMEOUT_SECONDS + 5
"""CloudFront's wait for the API: past the HTTP API's own cut-off, so a request that runs
out of time gets API Gateway's answer rather than a CloudFront error."""

DEFAULT_RESERVED_CONCURRENCY = 100
"""Executions the polling function may have at once: see the module docstring."""
RESERVED_CONCURRENCY_CONTEXT = "pollingConcurrency"
LAMBDA_MIN_UNRESERVED = 100
"""Executions Lambda keeps unreserved in every account (PutFunctionConcurrency's rule)."""


def reserved_concurrency_from(value: object) -> int | None:
    """``-c pollingConcurrency=``: a positive number, ``none``, or unset for the default."""
    text = str(value if value is not None else "").strip().lower()
    if text == "":
        return DEFAULT_RESERVED_CONCURRENCY
    if text == "none":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"-c {RESERVED_CONCURRENCY_CONTEXT}= takes a positive number or none, got {value!r}"
        )
    return int(text)


SNAP_START_CONTEXT = "pollingSnapStart"
LIVE_ALIAS = "live"
"""The alias the HTTP API invokes when SnapStart is on: always the newest published version."""


def snap_start_from(value: object) -> bool:
    """``-c pollingSnapStart=``: ``on`` or ``off`` (the default when unset)."""
    text = str(value if value is not None else "").strip().lower()
    if text in ("", "off"):
        return False
    if text == "on":
        return True
    raise ValueError(f"-c {SNAP_START_CONTEXT}= takes on or off, got {value!r}")


ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "error": "$context.error.message",
}
"""One JSON object per request. ``$context.path`` is the path alone: no query string, which
may carry a token, and no headers."""


class PollingApi(Construct):
    """The HTTP API, its stage and access logs, and the function behind it.

    :param events_table: the event log's table; the function may read it with
        read and publish to it (``infra.events_table.grant_log_append``), and nothing else.
    :param auth: how tokens are verified (``infra.auth.Auth``); the function gets its
        settings and may read its secret.
    :param cors_allow_origins: origins allowed to call the API from a browser.
        Default: any (``polling.config.DEFAULT_CORS_ALLOW_ORIGINS``).
    :param throttling_rate_limit: steady requests per second for the stage. Default: 100.
    :param reserved_concurrency: executions the function may have at once, or None for
        none reserved. Default: ``DEFAULT_RESERVED_CONCURRENCY``.
    :param throttling_burst_limit: burst of requests for the stage. Default: the reserved
        concurrency (200 with none reserved).
    :param memory_size: the function's memory in MB. Default: 256. A waiting long
        poll bills memory x time, so more memory makes every wait dearer.
    :param log_retention: how long the function's logs and the access logs are kept.
        Default: one month.
    :param snap_start: resume new execution environments from a snapshot of a published
        version, invoked through the ``live`` alias (see the module docstring). Default:
        False, billed per GB cached and per GB restored.

    Attributes: ``function``, ``function_logs``, ``alias`` (the ``live`` alias with
    SnapStart, else None), ``invoked`` (what the HTTP API invokes: the alias or the
    function), ``http_api``, ``stage``, ``access_logs``,
    ``url`` (the API's own endpoint, no trailing slash), ``edge_routes`` and
    ``edge_endpoints`` (what ``infra.edge`` serves from this API: every route).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        events_table: dynamodb.ITable,
        auth: Auth,
        cors_allow_origins: Sequence[str] = DEFAULT_CORS_ALLOW_ORIGINS,
        throttling_rate_limit: int = 100,
        reserved_concurrency: int | None = DEFAULT_RESERVED_CONCURRENCY,
        throttling_burst_limit: int | None = None,
        memory_size: int = 256,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        snap_start: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        if reserved_concurrency is not None and reserved_concurrency < 1:
            raise ValueError("reserved_concurrency must be at least 1 (or None: unreserved)")
        burst = throttling_burst_limit or reserved_concurrency or 200

        # Created here rather than left to Lambda, so it has a retention and goes with the stack.
        self.function_logs = logs.LogGroup(
            self, "FunctionLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description="Polling API: FastAPI behind Mangum on the event log",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            code=function_code(
                packages=("auth", "eventlog", "polling"),
                dependency_group=("polling", *auth.dependency_groups),
            ),
            handler="polling.handler.handler",
            memory_size=memory_size,
            timeout=Duration.seconds(FUNCTION_TIMEOUT_SECONDS),
            reserved_concurrent_executions=reserved_concurrency,
            log_group=self.function_logs,
            logging_format=LOGGING_FORMAT,
            application_log_level_v2=APPLICATION_LOG_LEVEL,
            environment={
                "EVENTS_TABLE_NAME": events_table.table_name,
                "CORS_ALLOW_ORIGINS": ",".join(cors_allow_origins),
                **auth.environment,
            },
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            # A version left behind would keep its snapshot cached, and billed.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY)
            if snap_start
            else None,
        )
        self.alias: lambda_.Alias | None = (
            lambda_.Alias(
                self, "Live", alias_name=LIVE_ALIAS, version=self.function.current_version
            )
            if snap_start
            else None
        )
        self.invoked: lambda_.IFunction = self.alias or self.function
        auth.grant_verify(self.function)
        grant_log_append(events_table, self.function)

        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{Stack.of(self).stack_name}-polling",
            description="Polling transport of the event log",
            create_default_stage=False,
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=list(cors_allow_origins),
                allow_methods=[apigwv2.CorsHttpMethod[method] for method in CORS_ALLOW_METHODS],
                allow_headers=list(CORS_ALLOW_HEADERS),
                expose_headers=list(CORS_EXPOSE_HEADERS),
                max_age=Duration.seconds(CORS_MAX_AGE_SECONDS),
            ),
        )
        integration = HttpLambdaIntegration(
            "Function",
            self.invoked,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        for method, path in ROUTES:
            self.http_api.add_routes(
                path=path, methods=[apigwv2.HttpMethod[method]], integration=integration
            )

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.http_api,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=throttling_rate_limit, burst_limit=burst),
            access_log_settings=json_access_logs(self.access_logs, ACCESS_LOG_FORMAT),
        )
        # The $default stage serves at the root: the API's endpoint, without a trailing slash.
        self.url: str = self.http_api.api_endpoint
        acknowledge_routes(
            self.http_api,
            "The function verifies every request's token itself (polling.auth): an HTTP API "
            "authorizer could not check the channel grant or ?token=.",
        )
        acknowledge_runtime(self.function)

        stack = Stack.of(self)
        api_domain = f"{self.http_api.api_id}.execute-api.{stack.region}.{stack.url_suffix}"
        behavior = api_behavior(
            origins.HttpOrigin(
                api_domain,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                read_timeout=Duration.seconds(ORIGIN_READ_TIMEOUT_SECONDS),
            ),
            methods=cloudfront.AllowedMethods.ALLOW_ALL,
        )
        self.edge_routes: tuple[EdgeRoute, ...] = tuple(
            EdgeRoute(path_pattern=path.replace("{channel}", "*"), behavior=behavior)
            for path in dict.fromkeys(path for _method, path in ROUTES)
        )
        self.edge_endpoints: tuple[EdgeEndpoint, ...] = (
            EdgeEndpoint(output_key=endpoints.POLLING_API_URL),
        )
        self.watched: tuple[Watched, ...] = (
            *lambda_watches("Polling function", self.function),
            Watched(
                kind="concurrency_near_reserve",
                label="Polling concurrency",
                metric=self.function.metric("ConcurrentExecutions"),
                limit=reserved_concurrency,
            ),
            Watched(
                kind="http_5xx", label="Polling API 5xx", metric=self.http_api.metric_server_error()
            ),
        )
        self.graphs: tuple[Graph, ...] = (
            Graph(
                title="Long polls: wait (ms) and empty answers",
                left=tuple(
                    code_metric(metrics.LONG_POLL_WAIT, service=metrics.POLLING, statistic=s)
                    for s in ("p50", "p99")
                ),
                right=(code_metric(metrics.LONG_POLL_EMPTY, service=metrics.POLLING),),
            ),
        )


class PollingStack(Stack):
    """The polling transport on the event log's table, served at the edge."""

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
        self.polling_api = PollingApi(
            self,
            "PollingApi",
            events_table=events_table,
            auth=auth,
            reserved_concurrency=reserved_concurrency_from(
                self.node.try_get_context(RESERVED_CONCURRENCY_CONTEXT)
            ),
            snap_start=snap_start_from(self.node.try_get_context(SNAP_START_CONTEXT)),
        )
        self.edge_routes = self.polling_api.edge_routes
        self.edge_endpoints = self.polling_api.edge_endpoints
        self.watched = self.polling_api.watched
        self.graphs = self.polling_api.graphs
