"""API Gateway access logs: one JSON object per request, in a log group of the API's stack.

Both APIs log through this, with formats that never hold a query string (a browser's
token travels there) or a header.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_logs as logs


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(
        self, *, destination: apigwv2.IAccessLogDestination, format: apigateway.AccessLogFormat
    ) -> None:
        self._destination = destination
        self._format = format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return self._format


def json_access_logs(
    log_group: logs.ILogGroup, fields: dict[str, str]
) -> apigwv2.IAccessLogSettings:
    """Access log settings writing ``fields`` (name -> ``$context`` variable) as JSON."""
    return _AccessLogSettings(
        destination=apigwv2.LogGroupLogDestination(log_group),
        format=apigateway.AccessLogFormat.custom(json.dumps(fields)),
    )
