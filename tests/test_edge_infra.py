"""CDK assertions for the edge with a custom domain (the default is covered through the CLI)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk.assertions import Template

from eventlog import endpoints
from infra import app_rules
from infra.edge import EdgeConfig, EdgeEndpoint, EdgeRoute, EdgeStack, api_behavior, behaviors

DOMAIN = "realtime.example.com"
CERTIFICATE = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def template() -> Template:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    app_rules.apply(app)
    route = EdgeRoute(
        path_pattern="/api/*",
        behavior=api_behavior(
            origins.HttpOrigin("api.example.com"), methods=cloudfront.AllowedMethods.ALLOW_ALL
        ),
    )
    stack = EdgeStack(
        app,
        endpoints.EDGE_STACK,
        routes=[route],
        endpoints_offered=[
            EdgeEndpoint(output_key=endpoints.WEBSOCKET_URL, scheme="wss", path="/ws")
        ],
        config=EdgeConfig(domain_name=DOMAIN, certificate_arn=CERTIFICATE),
    )
    return Template.from_stack(stack)


def test_a_custom_domain_is_served_with_its_certificate_and_tls_1_2(template: Template) -> None:
    (distribution,) = template.find_resources("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"]["AcmCertificateArn"] == CERTIFICATE
    assert config["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"


def test_the_endpoints_use_the_custom_domain(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    assert outputs[endpoints.DEMO_URL]["Value"] == f"https://{DOMAIN}/"
    assert outputs[endpoints.WEBSOCKET_URL]["Value"] == f"wss://{DOMAIN}/ws"


def test_a_domain_without_a_certificate_is_refused() -> None:
    with pytest.raises(ValueError, match="go together"):
        EdgeConfig(domain_name=DOMAIN)
    with pytest.raises(ValueError, match="go together"):
        EdgeConfig(certificate_arn=CERTIFICATE)


def _route(path: str, host: str, *, fallback: bool = False) -> EdgeRoute:
    behavior = api_behavior(origins.HttpOrigin(host), methods=cloudfront.AllowedMethods.ALLOW_ALL)
    return EdgeRoute(path_pattern=path, behavior=behavior, fallback=fallback)


def test_a_fallback_route_serves_a_path_only_when_no_route_does() -> None:
    polling = _route("/channels/*/events", "polling.example.com")
    sse = _route("/channels/*/events", "sse.example.com", fallback=True)
    stream = _route("/channels/*/stream", "sse.example.com")
    # Whatever the order of the transports in app.py.
    assert behaviors([sse, stream, polling]) == {
        "/channels/*/events": polling.behavior,
        "/channels/*/stream": stream.behavior,
    }
    assert behaviors([sse, stream]) == {
        "/channels/*/events": sse.behavior,
        "/channels/*/stream": stream.behavior,
    }


def test_two_routes_for_one_path_are_refused() -> None:
    with pytest.raises(ValueError, match="two routes"):
        behaviors([_route("/a", "one.example.com"), _route("/a", "two.example.com")])
    with pytest.raises(ValueError, match="two fallback routes"):
        behaviors(
            [_route("/a", "one.example.com", fallback=True), _route("/a", "two", fallback=True)]
        )
