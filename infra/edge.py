"""The front door: one HTTPS address for the demo page and every transport.

A CloudFront distribution serves ``web/`` from a private S3 bucket and routes the
transports' paths to their origins, so a browser talks to one origin over HTTPS:

| path | origin |
|---|---|
| ``/channels/*/events``, ``/healthz`` ... | the polling HTTP API |
| ``/channels/*/stream`` | the SSE service's internal load balancer (a VPC origin) |
| ``/channels/*/events``, without polling | the SSE service, which serves the same contract |
| ``/ws`` | the WebSocket API's stage |
| everything else | the demo page's bucket (origin access control) |

Each transport stack says which paths it serves and how (``EdgeRoute``) and which
endpoints it offers (``EdgeEndpoint``); this stack only assembles them, so deleting
a transport's line in ``app.py`` also removes its paths here. A CloudFront path pattern
serves one origin, so where two transports serve the same path (the log's publish and page
read, ``/channels/*/events``: the polling API and the SSE service), one marks its route a
``fallback``, taken only when no other transport serves that path (``behaviors``). Why one
address:

- **HTTPS everywhere**: tokens travel in ``?token=`` on an ``EventSource`` and a
  WebSocket (browsers cannot set headers there), so they must never cross the
  internet in clear text, and a page served over HTTPS cannot open ``http://``
  streams at all (mixed content). CloudFront speaks HTTP/2 and HTTP/3 to browsers,
  which also lifts HTTP/1.1's six-connections-per-origin limit on open streams.
- **Same origin**: the page, its API calls and its streams share one origin, so
  nothing depends on CORS in a browser (the APIs still answer CORS for other pages).

What CloudFront does to a stream, from its documentation:

- The origin response timeout is both the wait for the first byte and the longest
  gap between two packets of a response ("the amount of time ... CloudFront waits
  after receiving a packet of a response from the origin and before receiving the
  next packet", docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/
  DownloadDistValuesOrigin.html#DownloadDistValuesOriginResponseTimeout). SSE's
  heartbeat (15 s) keeps a quiet stream under it; ``SSE_ORIGIN_READ_TIMEOUT_SECONDS``
  says so in code. No total response duration is enforced unless one is set
  (``responseCompletionTimeout``, unset here). Connections idle for 10 minutes are
  closed, which neither a heartbeating stream nor a pinged WebSocket reaches.
- CloudFront compresses only listed content types of 1,000 bytes to 10 MB with a
  known length; ``text/event-stream`` is not among them (docs.aws.amazon.com/
  AmazonCloudFront/latest/DeveloperGuide/ServingCompressedFiles.html), and every
  transport route here also disables compression and caching outright
  (``CachePolicy.CACHING_DISABLED``), so a stream or a long poll is never held back.
- WebSockets pass through when the ``Sec-WebSocket-*`` headers are forwarded
  (docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/
  distribution-working-with.websockets.html). API Gateway origins get every viewer
  header but ``Host`` (the managed ``AllViewerExceptHostHeader`` policy): API
  Gateway routes on its own host name, and a forwarded viewer ``Host`` is refused.

Logs: CloudFront's standard logs record the query string (``cs-uri-query``,
docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logs-reference.html),
where browsers put their tokens, so they are off; enable them only with a pipeline
that drops that field.

Custom domain: ``-c domainName=realtime.example.com -c certificateArn=<ACM certificate
in us-east-1>`` serves the distribution under that name (TLS 1.2 at least); point a
DNS alias or CNAME at the ``DistributionDomainName`` output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, DefaultStackSynthesizer, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct, Node

from eventlog import endpoints
from infra.app_rules import (
    LAMBDA_BASIC_EXECUTION,
    acknowledge,
    acknowledge_cdk_singletons,
    nag_text,
)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

DOMAIN_NAME_CONTEXT = "domainName"
CERTIFICATE_ARN_CONTEXT = "certificateArn"

BOOTSTRAP_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"

OUTPUTS_FILE = "outputs.json"
"""The endpoints file the demo page reads next to itself (``web/api.js``), written at deploy
time with the distribution's own address."""


_DEPLOYMENT_GRANTS = (
    "CDK's BucketDeployment copies web/ into this stack's page bucket, and only that "
    "bucket: the wildcards are over its objects and the S3 actions a sync needs."
)


@dataclass(frozen=True, kw_only=True)
class EdgeRoute:
    """One path pattern of the distribution and the behaviour that serves it."""

    path_pattern: str
    behavior: cloudfront.BehaviorOptions
    fallback: bool = False
    """Served only when no other route has this path pattern (CloudFront allows one each)."""


def behaviors(routes: Sequence[EdgeRoute]) -> dict[str, cloudfront.BehaviorOptions]:
    """Each path pattern's behaviour: a route's, else a fallback's; two of either are refused."""
    chosen: dict[str, cloudfront.BehaviorOptions] = {}
    for fallback in (False, True):
        taken = set(chosen)
        for route in routes:
            if route.fallback != fallback or route.path_pattern in taken:
                continue
            if route.path_pattern in chosen:
                kind = "fallback routes" if fallback else "routes"
                raise ValueError(f"two {kind} for {route.path_pattern!r}: CloudFront serves one")
            chosen[route.path_pattern] = route.behavior
    return chosen


@dataclass(frozen=True, kw_only=True)
class EdgeEndpoint:
    """An endpoint a transport offers at the edge: written as ``output_key`` in the outputs.

    The URL is ``<scheme>://<the distribution's domain><path>``.
    """

    output_key: str
    scheme: str = "https"
    path: str = ""


def api_behavior(
    origin: cloudfront.IOrigin, *, methods: cloudfront.AllowedMethods
) -> cloudfront.BehaviorOptions:
    """An API Gateway origin: nothing cached or compressed, every viewer header but ``Host``."""
    return cloudfront.BehaviorOptions(
        origin=origin,
        allowed_methods=methods,
        viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
        cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
        origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
        compress=False,
    )


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """An optional custom domain: both or neither."""

    domain_name: str | None = None
    certificate_arn: str | None = None

    def __post_init__(self) -> None:
        if (self.domain_name is None) != (self.certificate_arn is None):
            raise ValueError(
                f"-c {DOMAIN_NAME_CONTEXT}= and -c {CERTIFICATE_ARN_CONTEXT}= go together: "
                "the certificate (in us-east-1) must cover the domain"
            )

    @classmethod
    def from_context(cls, node: Node) -> EdgeConfig:
        def value(key: str) -> str | None:
            raw = node.try_get_context(key)
            return str(raw) if raw not in (None, "") else None

        return cls(
            domain_name=value(DOMAIN_NAME_CONTEXT),
            certificate_arn=value(CERTIFICATE_ARN_CONTEXT),
        )


class Edge(Construct):
    """The distribution, the demo page's bucket and its deployment.

    :param routes: every transport's paths (``EdgeRoute``), in order of precedence.
    :param endpoints: every transport's endpoints, written to the page's ``outputs.json``.
    :param config: an optional custom domain. Default: the distribution's own domain.

    Attributes: ``bucket``, ``distribution``, ``domain_name`` (what browsers use),
    ``urls`` (output key -> URL, the demo page's included).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        routes: Sequence[EdgeRoute],
        endpoints_offered: Sequence[EdgeEndpoint],
        config: EdgeConfig | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        config = config or EdgeConfig()

        self.bucket = s3.Bucket(
            self,
            "DemoPage",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            # Only the page lives here, redeployed from web/ at every deploy.
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "The bucket holds the public demo page, copied from web/ at every deploy; "
            "CloudFront (origin access control) is its only reader.",
        )
        certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn)
            if config.certificate_arn
            else None
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{Stack.of(self).stack_name}: demo page and realtime transports",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
            ),
            additional_behaviors=behaviors(routes),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            domain_names=[config.domain_name] if config.domain_name else None,
            certificate=certificate,
            # Only a custom certificate sets the viewers' TLS floor; the default one is fixed.
            minimum_protocol_version=(
                cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if certificate else None
            ),
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR3",
            "Standard logs record the query string, where browsers send their tokens "
            "(EventSource and WebSocket cannot set headers); see the module docstring.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "A template for any audience: restrict countries here if yours is regional.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR2",
            "Every transport verifies its token before it does any work, and the APIs' stage "
            "throttling is the rate control: their execute-api endpoints stay public, so a "
            "web ACL here could be bypassed. Add one (web_acl_id) for the page if you need it.",
        )
        if certificate is None:
            acknowledge(
                self.distribution,
                "AwsSolutions-CFR4",
                "The default *.cloudfront.net certificate fixes the viewer TLS policy; "
                "with -c domainName/-c certificateArn the minimum is TLS 1.2 (2021).",
            )
        self.domain_name: str = config.domain_name or self.distribution.distribution_domain_name
        self.urls: dict[str, str] = {endpoints.DEMO_URL: f"https://{self.domain_name}/"}
        for offered in endpoints_offered:
            self.urls[offered.output_key] = f"{offered.scheme}://{self.domain_name}{offered.path}"

        outputs_file = {Stack.of(self).stack_name: self.urls}
        stack = Stack.of(self)
        page_objects = nag_text(self, self.bucket.arn_for_objects("*"))
        # The bootstrap's asset bucket, under the qualifier the app is synthesized with.
        qualifier = (
            stack.node.try_get_context(BOOTSTRAP_QUALIFIER_CONTEXT)
            or DefaultStackSynthesizer.DEFAULT_QUALIFIER
        )
        bootstrap_assets = (
            f"arn:{stack.partition}:s3:::cdk-{qualifier}-assets-{stack.account}-{stack.region}/*"
        )
        self.deployment = s3deploy.BucketDeployment(
            self,
            "DeployDemoPage",
            sources=[
                s3deploy.Source.asset(str(WEB_DIR)),
                s3deploy.Source.json_data(OUTPUTS_FILE, outputs_file),
            ],
            destination_bucket=self.bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
        )
        acknowledge_cdk_singletons(
            Stack.of(self),
            "Custom::CDKBucketDeployment",
            {
                "AwsSolutions-L1": "CDK's BucketDeployment picks its function's runtime.",
                LAMBDA_BASIC_EXECUTION: "Lambda's own policy for its logs, no more.",
                "AwsSolutions-IAM5[Action::s3:GetObject*]": _DEPLOYMENT_GRANTS,
                "AwsSolutions-IAM5[Action::s3:GetBucket*]": _DEPLOYMENT_GRANTS,
                "AwsSolutions-IAM5[Action::s3:List*]": _DEPLOYMENT_GRANTS,
                "AwsSolutions-IAM5[Action::s3:DeleteObject*]": _DEPLOYMENT_GRANTS,
                "AwsSolutions-IAM5[Action::s3:Abort*]": _DEPLOYMENT_GRANTS,
                "AwsSolutions-IAM5[Resource::*]": "CloudFront's CreateInvalidation, after the "
                "page is copied, is granted on every distribution by BucketDeployment.",
                f"AwsSolutions-IAM5[Resource::{page_objects}]": _DEPLOYMENT_GRANTS,
                f"AwsSolutions-IAM5[Resource::{nag_text(self, bootstrap_assets)}]": "Reads the "
                "page's asset from the CDK bootstrap bucket, where cdk deploy uploaded it.",
            },
        )


class EdgeStack(Stack):
    """The ``Edge``; outputs ``DemoUrl`` and each transport's public endpoint."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        routes: Sequence[EdgeRoute],
        endpoints_offered: Sequence[EdgeEndpoint],
        config: EdgeConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.edge = Edge(
            self, "Edge", routes=routes, endpoints_offered=endpoints_offered, config=config
        )
        for key, url in self.edge.urls.items():
            CfnOutput(self, key, value=url)
        CfnOutput(
            self,
            "DistributionDomainName",
            value=self.edge.distribution.distribution_domain_name,
            description="Point a custom domain's DNS alias or CNAME here",
        )
