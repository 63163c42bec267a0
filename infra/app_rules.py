"""What holds for the whole app: weak references between its stacks, and cdk-nag.

References between stacks are weak: a value one stack takes from another is read
with ``Fn::GetStackOutput`` at deploy time instead of an export and an
``Fn::ImportValue``. CloudFormation refuses to delete an export another stack
imports ("Export ... cannot be deleted as it is in use"), so strong references lock
stacks together: switching ``-c auth=jwks`` (the secret's ARN goes away) or deleting
a transport would fail to deploy. Weak ones do not; the price is that a consumer
sees a changed value only when its own stack is updated: ``cdk deploy --all`` skips a
stack whose template did not change, so after a producer replaces a resource (a new
load balancer, a new API) deploy with ``--force`` once (docs.aws.amazon.com/
AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-getstackoutput.html).
Set here rather than in cdk.json so every app built from these stacks, the tests' too,
gets it.

cdk-nag's AwsSolutions pack runs as a CDK validation plugin on every synth (``make
synth``, ``cdk deploy``, the tests): an unacknowledged finding fails the synth, so a
change that weakens the template is caught where it is made. A finding that is
right for this template is acknowledged next to the resource it is about, with the
reason a reviewer would accept (``acknowledge``); ``-c nag=off`` skips the pack.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import IConstruct

NAG_CONTEXT = "nag"
REFERENCE_STRENGTH_CONTEXT = "@aws-cdk/core:defaultCrossStackReferences"


def apply(app: cdk.App) -> None:
    """Make references between ``app``'s stacks weak, and run cdk-nag at its synth.

    Call it on a new app, before any stack is added to it.
    """
    # An explicit choice wins: a deployment made with strong references moves to weak ones
    # through "both" (one deploy), as CDK's "Reference strength" section describes.
    if app.node.try_get_context(REFERENCE_STRENGTH_CONTEXT) is None:
        app.node.set_context(REFERENCE_STRENGTH_CONTEXT, "weak")
    if str(app.node.try_get_context(NAG_CONTEXT) or "on").lower() == "off":
        return
    from cdk_nag import AwsSolutionsChecks

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def nag_text(scope: IConstruct, value: str) -> str:
    """``value`` (a string that may hold tokens) as cdk-nag writes it in a finding's id.

    Literal parts stay; ``Ref`` and ``Fn::GetAtt`` become ``<Name>`` and ``<Name.Attr>``.
    The partition and region are literal in one synth and tokens in another, so an
    id that holds an ARN is built with this, never written out by hand.
    """
    resolved = cdk.Stack.of(scope).resolve(value)

    def render(part: Any) -> str:
        if isinstance(part, str):
            return part
        if isinstance(part, dict) and "Ref" in part:
            return f"<{part['Ref']}>"
        if isinstance(part, dict) and "Fn::GetAtt" in part:
            return f"<{'.'.join(part['Fn::GetAtt'])}>"
        if isinstance(part, dict) and "Fn::Join" in part:
            separator, parts = part["Fn::Join"]
            return str(separator).join(render(p) for p in parts)
        raise ValueError(f"cannot render {part!r} as cdk-nag does")

    return render(resolved)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge cdk-nag's ``rule`` for ``scope`` and everything in it, saying why."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def acknowledge_routes(api: IConstruct, reason: str) -> None:
    """Acknowledge AwsSolutions-APIG4 (no API Gateway authorizer) on each of ``api``'s routes."""
    from aws_cdk import aws_apigatewayv2 as apigwv2

    for route in api.node.find_all():
        if isinstance(route, apigwv2.CfnRoute):
            acknowledge(route, "AwsSolutions-APIG4", reason)


LAMBDA_BASIC_EXECUTION = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AWSLambdaBasicExecutionRole]"
)


def acknowledge_cdk_singletons(stack: cdk.Stack, prefix: str, rules: dict[str, str]) -> None:
    """Acknowledge ``rules`` (id -> reason) on the functions CDK itself adds to ``stack``.

    Constructs such as ``BucketDeployment`` and ``AwsCustomResource`` put one shared
    function at the stack's root, under an id that starts with ``prefix``.
    """
    for child in stack.node.children:
        if child.node.id.startswith(prefix):
            for rule, reason in rules.items():
                acknowledge(child, rule, reason)
