"""Operations: alarms to an SNS topic, and one dashboard per deployment.

Each transport says what it can be watched by (``Watched``: a kind, a label and a
metric of one of its resources); this module owns every threshold, with what the
alarm means and what to do about it (``THRESHOLDS``, also the README's "Operating
it" table), and builds one alarm and one dashboard widget per watched metric. So a
threshold is changed here, once, and deleting a transport deletes its alarms.

Below the alarms the dashboard graphs what the code itself says about delivery
(``Graph``: each transport's, and the event log's publishes), from the metrics
``eventlog.metrics`` defines and the functions emit in embedded metric format.

Notifications go to the ``RealtimeOperations`` topic; ``-c alarmEmail=you@example.com``
subscribes an address (confirm the e-mail AWS sends). Missing data is not a breach:
a quiet deployment is a healthy one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct, Node

from eventlog import metrics
from infra.app_rules import acknowledge

ALARM_EMAIL_CONTEXT = "alarmEmail"

Kind = Literal[
    "fanout_failures",
    "iterator_age",
    "delivery_age",
    "lambda_errors",
    "lambda_throttles",
    "concurrency_near_reserve",
    "http_5xx",
    "websocket_integration_errors",
    "alb_5xx",
    "unhealthy_hosts",
    "task_memory",
]


@dataclass(frozen=True, kw_only=True)
class Threshold:
    """When a kind of metric alarms, and what the alarm means to whoever gets it."""

    value: float
    statistic: str
    period: Duration
    evaluation_periods: int
    meaning: str
    action: str
    relative_to_limit: bool = False
    """``value`` is a fraction of the watched resource's own limit (``Watched.limit``)."""


_GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)

THRESHOLDS: dict[Kind, Threshold] = {
    "fanout_failures": Threshold(
        value=0,
        statistic="Maximum",
        period=_ONE_MINUTE,
        evaluation_periods=1,
        meaning="Stream records failed every retry and went to the fan-out's failure queue: "
        "their live WebSocket delivery was lost (clients still get them by cursor).",
        action="Read the fan-out's logs at that time; once fixed, redrive the queue's "
        "records or purge them.",
    ),
    "iterator_age": Threshold(
        value=60_000,  # ms
        statistic="Maximum",
        period=_ONE_MINUTE,
        evaluation_periods=5,
        meaning="The fan-out has been a minute or more behind the events table's stream for "
        "five minutes: WebSocket delivery is late.",
        action="Look for fan-out errors and throttles; give it more memory or smaller batches. "
        "The stream keeps records 24 h.",
    ),
    "delivery_age": Threshold(
        value=5_000,  # ms
        statistic="p99",
        period=_ONE_MINUTE,
        evaluation_periods=5,
        meaning="For five minutes, 1% of WebSocket deliveries came over 5 s after their "
        "publish. The stream alone adds about 0.2-0.6 s (p50-p99 to a consumer): the rest is "
        "the fan-out falling behind, throttled posts, or retried batches.",
        action="Compare the fan-out's duration, throttles and iterator age on the dashboard; "
        "more fan-out workers or memory, or ask for a higher API Gateway rate.",
    ),
    "lambda_errors": Threshold(
        value=0,
        statistic="Sum",
        period=_FIVE_MINUTES,
        evaluation_periods=1,
        meaning="A function failed (an unhandled exception or a timeout): a 5xx, an "
        "internal_error frame or a retried batch.",
        action="Read the function's log group for the traceback or 'Task timed out'.",
    ),
    "lambda_throttles": Threshold(
        value=0,
        statistic="Sum",
        period=_FIVE_MINUTES,
        evaluation_periods=1,
        meaning="Lambda refused invocations: the account's concurrency, or the function's "
        "reserve, is used up.",
        action="Compare ConcurrentExecutions with the quota; raise the reserve "
        "(pollingConcurrency) or ask for a higher account quota.",
    ),
    "concurrency_near_reserve": Threshold(
        value=0.8,
        statistic="Maximum",
        period=_ONE_MINUTE,
        evaluation_periods=3,
        relative_to_limit=True,
        meaning="The polling function has used 80% of its reserved concurrency for three "
        "minutes: long polls are about to be refused.",
        action="Raise pollingConcurrency (the account keeps 100 unreserved), or move clients "
        "to SSE or WebSocket, which hold no execution while they wait.",
    ),
    "http_5xx": Threshold(
        value=5,
        statistic="Sum",
        period=_FIVE_MINUTES,
        evaluation_periods=1,
        meaning="The polling API answered more than five 5xx in five minutes.",
        action="The polling function's errors and throttles say which; the access log has "
        "each request's status and integration error.",
    ),
    "websocket_integration_errors": Threshold(
        value=5,
        statistic="Sum",
        period=_FIVE_MINUTES,
        evaluation_periods=1,
        meaning="API Gateway could not run a WebSocket route's function more than five "
        "times in five minutes.",
        action="Check the route functions' errors and throttles, and their permissions.",
    ),
    "alb_5xx": Threshold(
        value=5,
        statistic="Sum",
        period=_FIVE_MINUTES,
        evaluation_periods=1,
        meaning="The SSE load balancer answered more than five 5xx itself in five minutes: "
        "no healthy task, or tasks refusing connections.",
        action="Check the service's running and healthy task count and its deployments.",
    ),
    "unhealthy_hosts": Threshold(
        value=0,
        statistic="Maximum",
        period=_ONE_MINUTE,
        evaluation_periods=3,
        meaning="An SSE task has failed its health check for three minutes.",
        action="Read the service's log group; ECS replaces the task, and a deployment whose "
        "tasks never become healthy is rolled back.",
    ),
    "task_memory": Threshold(
        value=80,  # percent
        statistic="Maximum",
        period=_FIVE_MINUTES,
        evaluation_periods=2,
        meaning="An SSE task has used over 80% of its memory for ten minutes: near the cap "
        "it gets killed and its clients reconnect all at once.",
        action="Check open streams per task against the scaling target; give tasks more "
        "memory or lower the target.",
    ),
}


_LABELS: dict[Kind, str] = {
    "fanout_failures": "Fan-out failure queue not empty",
    "iterator_age": "Fan-out iterator age",
    "delivery_age": "WebSocket delivery age",
    "lambda_errors": "Function errors (each function)",
    "lambda_throttles": "Function throttles (each function)",
    "concurrency_near_reserve": "Polling concurrency near its reserve",
    "http_5xx": "Polling API 5xx",
    "websocket_integration_errors": "WebSocket integration errors",
    "alb_5xx": "SSE load balancer 5xx",
    "unhealthy_hosts": "SSE unhealthy tasks",
    "task_memory": "SSE task memory",
}


def operating_table() -> str:
    """The README's table of alarms, made from ``THRESHOLDS`` (the test keeps them equal)."""
    rows = ["| alarm | what it means | what to do |", "|---|---|---|"]
    rows += [
        f"| {_LABELS[kind]} | {threshold.meaning} | {threshold.action} |"
        for kind, threshold in THRESHOLDS.items()
    ]
    return "\n".join(rows) + "\n"


@dataclass(frozen=True, kw_only=True)
class Watched:
    """A metric a transport can be watched by: ``kind`` picks its threshold."""

    kind: Kind
    label: str
    metric: cloudwatch.IMetric
    limit: float | None = None
    """The resource's own limit, for thresholds relative to it."""


def code_metric(
    metric: metrics.Metric, *, service: str, statistic: str = "Sum"
) -> cloudwatch.Metric:
    """A metric the code emits (``eventlog.metrics``), as CloudWatch will know it.

    No label: an alarm on a labelled metric is written as metric math, which is harder to
    read in the console for nothing."""
    return cloudwatch.Metric(
        namespace=metric.namespace,
        metric_name=metric.name,
        dimensions_map={metrics.SERVICE_DIMENSION: service},
        statistic=statistic,
        period=_ONE_MINUTE,
    )


@dataclass(frozen=True, kw_only=True)
class Graph:
    """A dashboard graph: ``left`` metrics, and ``right`` ones on an axis of their own."""

    title: str
    left: tuple[cloudwatch.IMetric, ...]
    right: tuple[cloudwatch.IMetric, ...] = ()


def publish_graphs() -> tuple[Graph, ...]:
    """The event log's publishes, from whichever transport published."""
    service = metrics.EVENTLOG
    return (
        Graph(
            title="Publish latency (ms)",
            left=tuple(
                code_metric(metrics.PUBLISH_LATENCY, service=service, statistic=statistic)
                for statistic in ("p50", "p99")
            ),
        ),
        Graph(
            title="Publish contention",
            left=(
                code_metric(metrics.SEQS_RETAKEN, service=service),
                code_metric(metrics.HEAD_REBUILDS, service=service),
            ),
        ),
    )


def lambda_watches(label: str, function: lambda_.IFunction) -> tuple[Watched, ...]:
    """Errors and throttles of one function."""
    return (
        Watched(kind="lambda_errors", label=f"{label} errors", metric=function.metric_errors()),
        Watched(
            kind="lambda_throttles", label=f"{label} throttles", metric=function.metric_throttles()
        ),
    )


class Operations(Construct):
    """The topic, an alarm per watched metric, and the dashboard.

    :param watched: every transport's ``Watched`` metrics.
    :param graphs: what the dashboard graphs below the alarms. Default: none.
    :param alarm_email: an address to subscribe to the topic, or None.

    Attributes: ``topic``, ``alarms`` (label -> alarm), ``dashboard``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        watched: Sequence[Watched],
        graphs: Sequence[Graph] = (),
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack_name = Stack.of(self).stack_name
        self.topic = sns.Topic(
            self, "Alarms", display_name=f"{stack_name} alarms", enforce_ssl=True
        )
        acknowledge(
            self.topic,
            "AwsSolutions-SNS2",
            "Alarm notifications carry no data; CloudWatch cannot publish to a topic under "
            "the AWS-managed key, and a customer key costs $1 a month.",
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for number, watch in enumerate(watched):
            threshold = THRESHOLDS[watch.kind]
            value = threshold.value
            if threshold.relative_to_limit:
                if watch.limit is None:
                    continue  # nothing to be near: e.g. a function with no reserve
                value = threshold.value * watch.limit
            alarm = cloudwatch.Alarm(
                self,
                f"Alarm{number}",
                alarm_description=f"{threshold.meaning} {threshold.action}",
                metric=_configured(watch.metric, threshold),
                threshold=value,
                comparison_operator=_GT,
                evaluation_periods=threshold.evaluation_periods,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
            self.alarms[watch.label] = alarm
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{stack_name}-realtime"
        )
        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.AlarmWidget(alarm=alarm, title=label, width=8)
            for label, alarm in self.alarms.items()
        ]
        widgets += [
            cloudwatch.GraphWidget(
                title=graph.title, left=list(graph.left), right=list(graph.right), width=8
            )
            for graph in graphs
        ]
        for row in range(0, len(widgets), 3):
            self.dashboard.add_widgets(*widgets[row : row + 3])


def _configured(metric: cloudwatch.IMetric, threshold: Threshold) -> cloudwatch.IMetric:
    if not isinstance(metric, cloudwatch.Metric):
        raise TypeError("a watched metric must be a plain cloudwatch.Metric")
    return metric.with_(statistic=threshold.statistic, period=threshold.period)


def alarm_email_from(node: Node) -> str | None:
    raw = node.try_get_context(ALARM_EMAIL_CONTEXT)
    return str(raw) if raw not in (None, "") else None


class OperationsStack(Stack):
    """The ``Operations`` of the whole deployment, with the publish graphs; outputs the
    topic's ARN."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        watched: Sequence[Watched],
        graphs: Sequence[Graph] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.operations = Operations(
            self,
            "Operations",
            watched=watched,
            graphs=(*publish_graphs(), *graphs),
            alarm_email=alarm_email_from(self.node),
        )
        CfnOutput(self, "AlarmTopicArn", value=self.operations.topic.topic_arn)
        CfnOutput(
            self,
            "DashboardName",
            value=self.operations.dashboard.dashboard_name,
        )
