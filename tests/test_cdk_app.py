"""The CDK app as users run it: the pinned CLI, from a non-interactive shell, per variant.

Each variant is one ``cdk synth`` of the real CLI (``node_modules/.bin/cdk``, pinned by
package-lock.json) with stdin closed and stdout piped, as CI and ``make deploy | tee``
run it; the default variant bundles every Lambda asset, as a deploy does. The
"without-X" variants are the synths of copies of the project with X removed as the
README says (``tests.removal_support``, shared with ``test_transport_removal.py``). Then every
variant's templates are checked together: no exports between stacks (so switching
between variants can never be refused by CloudFormation), every weak reference
resolves within its variant, cdk-nag found nothing unacknowledged, and cfn-lint is clean.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventlog import endpoints
from local.transports import Transport, absent_transports, present
from tests.removal_support import RemovedCopy, synthesize

# Seven synths (the first bundles every asset) take minutes on two busy cores.
pytestmark = pytest.mark.timeout(1200)

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"
JWKS_URL = "https://issuer.example.com/.well-known/jwks.json"


@dataclass(frozen=True)
class Variant:
    name: str
    context: tuple[str, ...] = ()
    without: str | None = None
    """A transport removed as the README says: the synth of its copy (removed_copies)."""
    needs: Transport | None = None
    """A transport the variant configures: synthesized only where the checkout has it."""


VARIANTS = (
    Variant("default"),
    Variant("auth-jwks", context=("auth=jwks", f"authJwksUrl={JWKS_URL}")),
    Variant("auth-off", context=("auth=off",)),
    Variant("polling-snapstart", context=("pollingSnapStart=on",), needs="polling"),
    Variant("without-polling", without="polling"),
    Variant("without-websocket", without="websocket"),
    Variant("without-sse", without="sse"),
)


def needs(*transports: str) -> pytest.MarkDecorator:
    """Skip a check of transports this checkout has removed (README, "Make it yours")."""
    missing = [name for name in transports if name in absent_transports()]
    return pytest.mark.skipif(bool(missing), reason=f"removed from this checkout: {missing}")


ALL = ("polling", "sse", "websocket")


@dataclass(frozen=True)
class Synth:
    variant: Variant
    outdir: Path
    result: subprocess.CompletedProcess[str]

    def templates(self) -> dict[str, dict[str, Any]]:
        return {
            path.name.removesuffix(".template.json"): json.loads(path.read_text())
            for path in sorted(self.outdir.glob("*.template.json"))
        }


@pytest.fixture(scope="module")
def synths(
    tmp_path_factory: pytest.TempPathFactory, removed_copies: dict[str, RemovedCopy]
) -> dict[str, Synth]:
    assert CDK.exists(), "the pinned CDK CLI is missing: `make test` installs it (npm ci)"
    copies = {v.name: removed_copies[v.without] for v in VARIANTS if v.without in removed_copies}
    found = {
        name: Synth(next(v for v in VARIANTS if v.name == name), c.synth.outdir, c.synth.result)
        for name, c in copies.items()
    }
    here = [v for v in VARIANTS if not v.without and (v.needs is None or present(v.needs))]
    folders = {v.name: tmp_path_factory.mktemp(v.name) for v in here}

    def synthesized(variant: Variant) -> Synth:
        done = synthesize(ROOT, folders[variant.name] / "cdk.out", context=variant.context)
        return Synth(variant, done.outdir, done.result)

    # Two at a time: each is a node process and a Python one.
    with ThreadPoolExecutor(max_workers=2) as pool:
        found.update({synth.variant.name: synth for synth in pool.map(synthesized, here)})
    return found


@pytest.fixture(params=[v.name for v in VARIANTS])
def synth(request: pytest.FixtureRequest, synths: dict[str, Synth]) -> Synth:
    if request.param not in synths:
        pytest.skip(f"{request.param}: that transport is removed from this checkout")
    return synths[request.param]


def walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def test_the_cli_synthesizes_without_a_terminal(synth: Synth) -> None:
    assert synth.result.returncode == 0, synth.result.stdout[-4000:]
    assert "Successfully synthesized" in synth.result.stdout
    # The ANSI escapes uv wrote into requirements when it took FORCE_COLOR as "colour on".
    assert "\x1b[" not in synth.result.stdout


def test_no_stack_imports_or_exports_a_value(synth: Synth) -> None:
    for name, template in synth.templates().items():
        assert not [node for node in walk(template) if "Fn::ImportValue" in node], name
        exported = [key for key, out in template.get("Outputs", {}).items() if "Export" in out]
        assert exported == [], f"{name} exports {exported}"


def test_every_weak_reference_resolves_within_its_variant(synth: Synth) -> None:
    templates = synth.templates()
    references = [
        node["Fn::GetStackOutput"]
        for template in templates.values()
        for node in walk(template)
        if "Fn::GetStackOutput" in node
    ]
    assert references, "the transports read the table and the secret from other stacks"
    for reference in references:
        producer = templates[reference["StackName"]]
        assert reference["OutputName"] in producer["Outputs"], reference


def test_cdk_nag_found_nothing_unacknowledged(synth: Synth) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    violations = [
        (plugin.get("pluginName"), violation.get("ruleName"))
        for plugin in report["pluginReports"]
        for violation in plugin.get("violations", [])
    ]
    assert violations == []
    # The pack ran: the acknowledgments it honoured are recorded in the stacks' metadata.
    metadata = "".join(p.read_text() for p in synth.outdir.glob("*.metadata.json"))
    assert '"aws:cdk:acknowledged-rules"' in metadata
    assert "AwsSolutions-IAM4" in metadata


def test_cfn_lint_is_clean(synths: dict[str, Synth]) -> None:
    templates = sorted(str(p) for s in synths.values() for p in s.outdir.glob("*.template.json"))
    # W3005: a DependsOn that CDK writes beside a Ref/GetAtt already implying it.
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--ignore-checks",
            "W3005",
            "--",
            *templates,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def behaviors(synth: Synth) -> dict[str, dict[str, Any]]:
    (distribution,) = [
        resource["Properties"]["DistributionConfig"]
        for resource in synth.templates()[endpoints.EDGE_STACK]["Resources"].values()
        if resource["Type"] == "AWS::CloudFront::Distribution"
    ]
    found = {b["PathPattern"]: b for b in distribution.get("CacheBehaviors", [])}
    found["default"] = distribution["DefaultCacheBehavior"]
    return found


@needs(*ALL)
def test_one_https_address_serves_the_page_and_every_transport(synths: dict[str, Synth]) -> None:
    synth = synths["default"]
    found = behaviors(synth)
    assert set(found) == {
        "default",
        "/channels/*/events",
        "/channels/*/stream",
        "/healthz",
        "/openapi.json",
        "/docs",
        "/ws",
    }
    for pattern, behavior in found.items():
        expected = "redirect-to-https" if pattern == "default" else "https-only"
        assert behavior["ViewerProtocolPolicy"] == expected, pattern
        if pattern != "default":
            # Nothing cached or compressed: a stream or a long poll is never held back.
            assert behavior["Compress"] is False, pattern
            assert behavior["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad", pattern
    outputs = synth.templates()[endpoints.EDGE_STACK]["Outputs"]
    offered = {endpoints.DEMO_URL, endpoints.POLLING_API_URL, endpoints.SSE_URL}
    assert offered | {endpoints.WEBSOCKET_URL} <= set(outputs)
    for key in offered:
        assert json.dumps(outputs[key]["Value"]).startswith('{"Fn::Join": ["", ["https://'), key
    assert json.dumps(outputs[endpoints.WEBSOCKET_URL]["Value"]).startswith(
        '{"Fn::Join": ["", ["wss://'
    )


@needs("polling", "sse")
def test_the_log_api_is_at_the_edge_with_or_without_polling(synths: dict[str, Synth]) -> None:
    def origin(synth: Synth, pattern: str) -> Any:
        return behaviors(synth)[pattern]["TargetOriginId"]

    # The polling API when deployed, else the SSE service: publish and backfill stay.
    default, without_polling = synths["default"], synths["without-polling"]
    assert origin(default, "/channels/*/events") == origin(default, "/healthz")
    assert origin(default, "/channels/*/events") != origin(default, "/channels/*/stream")
    events = behaviors(without_polling)["/channels/*/events"]
    assert events["TargetOriginId"] == origin(without_polling, "/channels/*/stream")
    assert "POST" in events["AllowedMethods"]


@needs(*ALL)
def test_the_demo_page_is_deployed_with_its_endpoints_file(synths: dict[str, Synth]) -> None:
    synth = synths["default"]
    edge = synth.templates()[endpoints.EDGE_STACK]["Resources"]
    (deployment,) = [r for r in edge.values() if r["Type"] == "Custom::CDKBucketDeployment"]
    sources = [
        synth.outdir / f"asset.{key.removesuffix('.zip')}"
        for key in deployment["Properties"]["SourceObjectKeys"]
    ]
    files = {path.name: path for source in sources for path in source.iterdir()}
    assert {"index.html", "api.js", "outputs.json"} <= set(files)
    # outputs.json names every endpoint; each value is filled in at deploy time with the
    # distribution's own https:// (or wss://) address.
    written = files["outputs.json"].read_text()
    keys = re.findall(r'"(\w+)":<<marker:0xbaba:\d+>>', written)
    assert sorted(keys) == sorted(
        [endpoints.DEMO_URL, endpoints.POLLING_API_URL, endpoints.SSE_URL, endpoints.WEBSOCKET_URL]
    )
    markers = json.dumps(deployment["Properties"]["SourceMarkers"])
    assert markers.count("DomainName") == len(keys)
    assert deployment["Properties"]["DistributionPaths"] == ["/*"]
    (bucket,) = [r for r in edge.values() if r["Type"] == "AWS::S3::Bucket"]
    assert bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


@needs(*ALL)
def test_a_removed_transport_leaves_no_path_at_the_edge(synths: dict[str, Synth]) -> None:
    assert "/channels/*/stream" not in behaviors(synths["without-sse"])
    assert "/ws" not in behaviors(synths["without-websocket"])
    assert "/healthz" not in behaviors(synths["without-polling"])
    assert endpoints.SSE_STACK not in synths["without-sse"].templates()
    edge_outputs = synths["without-sse"].templates()[endpoints.EDGE_STACK]["Outputs"]
    assert endpoints.SSE_URL not in edge_outputs


def test_auth_modes_change_only_what_they_must(synths: dict[str, Synth]) -> None:
    def secrets(name: str) -> int:
        auth = synths[name].templates()[endpoints.AUTH_STACK]
        kinds = [r["Type"] for r in auth.get("Resources", {}).values()]
        return kinds.count("AWS::SecretsManager::Secret")

    assert (secrets("default"), secrets("auth-jwks"), secrets("auth-off")) == (1, 0, 0)
    stdout = synths["auth-off"].result.stdout
    assert re.search(r"auth.*off", stdout, re.IGNORECASE), "auth=off must warn at synth"


@needs("polling")
def test_polling_snapstart_is_switched_by_its_context(synths: dict[str, Synth]) -> None:
    def snapshotted(name: str) -> tuple[bool, int]:
        resources = synths[name].templates()[endpoints.POLLING_STACK]["Resources"].values()
        functions = [r for r in resources if r["Type"] == "AWS::Lambda::Function"]
        aliases = [r for r in resources if r["Type"] == "AWS::Lambda::Alias"]
        return any("SnapStart" in f["Properties"] for f in functions), len(aliases)

    assert snapshotted("default") == (False, 0)
    assert snapshotted("polling-snapstart") == (True, 1)


def test_an_unacknowledged_finding_fails_the_synth(tmp_path: Path) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs

    from infra import app_rules

    app = cdk.App(outdir=str(tmp_path))
    app_rules.apply(app)
    # A queue that accepts plain HTTP and has no dead-letter queue: AwsSolutions-SQS3/SQS4.
    sqs.Queue(cdk.Stack(app, "Careless"), "Queue")
    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    assert "AwsSolutions-SQS3" in str(failure.value)
    assert "AwsSolutions-SQS4" in str(failure.value)


def alarms_of(synth: Synth) -> list[dict[str, Any]]:
    operations = synth.templates()[endpoints.OPERATIONS_STACK]["Resources"]
    return [r["Properties"] for r in operations.values() if r["Type"] == "AWS::CloudWatch::Alarm"]


@needs(*ALL)
def test_every_transport_is_watched_and_every_alarm_pages(synths: dict[str, Synth]) -> None:
    alarms = alarms_of(synths["default"])
    assert {a["MetricName"] for a in alarms} == {
        "ApproximateNumberOfMessagesVisible",  # the fan-out's failure queue
        "IteratorAge",
        "DeliveryAge",  # emitted by the fan-out itself (eventlog.metrics)
        "Errors",
        "Throttles",
        "ConcurrentExecutions",
        "5xx",
        "IntegrationError",
        "HTTPCode_ELB_5XX_Count",
        "UnHealthyHostCount",
        "MemoryUtilization",
    }
    operations = synths["default"].templates()[endpoints.OPERATIONS_STACK]["Resources"]
    (topic,) = [name for name, r in operations.items() if r["Type"] == "AWS::SNS::Topic"]
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": topic}], alarm["MetricName"]
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmDescription"]
    assert [r for r in operations.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    # A deleted transport takes its alarms with it.
    without_sse = {a["Namespace"] for a in alarms_of(synths["without-sse"])}
    assert "AWS/ApplicationELB" not in without_sse
    assert "AWS/ECS" not in without_sse


@needs("websocket")
def test_the_delivery_age_alarm_watches_what_the_fanout_emits(synths: dict[str, Synth]) -> None:
    from eventlog import metrics
    from infra.operations import THRESHOLDS

    (alarm,) = [a for a in alarms_of(synths["default"]) if a["MetricName"] == "DeliveryAge"]
    threshold = THRESHOLDS["delivery_age"]
    assert alarm["Namespace"] == metrics.DELIVERY_AGE.namespace
    assert alarm["Dimensions"] == [{"Name": "Service", "Value": metrics.WEBSOCKET}]
    assert (alarm["ExtendedStatistic"], alarm["Threshold"]) == ("p99", threshold.value)
    assert alarm["EvaluationPeriods"] == threshold.evaluation_periods
    assert alarm["Period"] == 60


def dashboard_body(synth: Synth) -> str:
    operations = synth.templates()[endpoints.OPERATIONS_STACK]["Resources"]
    (dashboard,) = [r for r in operations.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["Properties"]["DashboardBody"]
    # The body is a Fn::Join of strings and references: its strings are what matters here.
    return "".join(part for part in body["Fn::Join"][1] if isinstance(part, str))


@needs(*ALL)
def test_the_dashboard_graphs_every_metric_the_code_emits(synths: dict[str, Synth]) -> None:
    from eventlog import metrics

    body = dashboard_body(synths["default"])
    for metric in metrics.ALL:
        assert f'"{metric.name}"' in body, metric.name
    assert '"title":"WebSocket delivery age (ms)"' in body
    # Deleting a transport deletes its graphs; the event log's publishes stay.
    without_sse = dashboard_body(synths["without-sse"])
    assert f'"{metrics.SSE_OPEN_STREAMS.name}"' not in without_sse
    assert f'"{metrics.PUBLISH_LATENCY.name}"' in without_sse


@needs(*ALL)
def test_every_function_logs_json(synths: dict[str, Synth]) -> None:
    functions = [
        resource["Properties"]
        for template in synths["default"].templates().values()
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        # Ours, not the CDK's own helpers (the demo page's deployment, custom resources).
        and resource["Properties"]
        .get("Handler", "")
        .startswith(("polling.", "websocket_api.", "sse_service."))
    ]
    assert len(functions) == 12  # polling; 8 routes, the authorizer, the fan-out; the relay
    for function in functions:
        assert function["LoggingConfig"]["LogFormat"] == "JSON", function["Handler"]
        assert function["LoggingConfig"]["ApplicationLogLevel"] == "INFO"


@needs(*ALL)
def test_the_readme_explains_every_alarm_as_defined() -> None:
    from infra.operations import operating_table

    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- operating-table:start -->\n") + len(
        "<!-- operating-table:start -->\n"
    )
    end = readme.index("<!-- operating-table:end -->")
    assert readme[start:end] == operating_table()
