"""Expected on AWS: each local latency moved onto a deployment's hops (an estimate).

The local stack runs every hop on one machine, so its latencies are not a deployment's.
The estimate starts from the measured local figure, takes out the one hop whose local
stand-in differs most from AWS (the DynamoDB stream poller, which the local stack runs
every ``POLL_INTERVAL_SECONDS``), and puts in AWS's hop as measured in a region. It
leaves out what AWS publishes no figure for and what depends on the client: API
Gateway's and the load balancer's own processing, and the client's round trip to the
region (add your own ping time).

Polling has no stream hop: its waiting request re-reads the log itself, so its estimate
is the local figure (DynamoDB answers reads in single-digit milliseconds, as moto does
locally; docs.aws.amazon.com/amazondynamodb/latest/developerguide/Introduction.html).
SSE with the broker and WebSocket both wait for the stream: the relay Lambda and the
fan-out Lambda each read it through an event source mapping. The broker's own hop
(publish to Valkey, push to the task) is sub-millisecond on ElastiCache
(docs.aws.amazon.com/AmazonElastiCache/latest/dg/agentic-memory-why-elasticache.html)
and is left as measured locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from local.stream_mapping import POLL_INTERVAL_SECONDS


@dataclass(frozen=True, kw_only=True)
class Hop:
    """One hop of a deployment, with its latency where someone measured it."""

    name: str
    p50_ms: float
    p99_ms: float
    source: str


STREAM_TO_LAMBDA = Hop(
    name="DynamoDB stream -> Lambda",
    p50_ms=213.0,
    p99_ms=552.0,
    source=(
        "measured from a table write to the consumer Lambda, eu-west-1, 2022: "
        "bitesizedserverless.com/bite/serverless-messaging-latency-compared; Lambda "
        "polls each shard 4 times a second: "
        "docs.aws.amazon.com/lambda/latest/dg/with-ddb.html"
    ),
)

HOPS_THROUGH_THE_STREAM = {"polling": False, "sse": True, "websocket": True}
"""Which transports' deliveries wait for the DynamoDB stream (SSE: through the relay)."""


@dataclass(frozen=True, kw_only=True)
class Estimate:
    transport: str
    local_p50_ms: float
    local_p99_ms: float
    p50_ms: float
    p99_ms: float
    replaced: str
    """What the estimate changed, in words (empty: the local figure stands)."""


def local_stream_hop_ms() -> tuple[float, float]:
    """The local poller's share of a delivery: half an interval typically, one at worst."""
    interval_ms = POLL_INTERVAL_SECONDS * 1000
    return interval_ms / 2, interval_ms


def estimate(transport: str, latency: Mapping[str, Any]) -> Estimate:
    """The deployed p50 and p99 of ``transport``, from its local row of ``results.json``."""
    p50, p99 = float(latency["p50_ms"]), float(latency["p99_ms"])
    if not HOPS_THROUGH_THE_STREAM[transport]:
        return Estimate(
            transport=transport,
            local_p50_ms=p50,
            local_p99_ms=p99,
            p50_ms=p50,
            p99_ms=p99,
            replaced="",
        )
    local_p50, local_p99 = local_stream_hop_ms()
    return Estimate(
        transport=transport,
        local_p50_ms=p50,
        local_p99_ms=p99,
        p50_ms=p50 - local_p50 + STREAM_TO_LAMBDA.p50_ms,
        p99_ms=p99 - local_p99 + STREAM_TO_LAMBDA.p99_ms,
        replaced=(
            f"the local stream poller ({local_p50:.0f} ms typical, {local_p99:.0f} ms at "
            f"worst) replaced by AWS's {STREAM_TO_LAMBDA.name} hop "
            f"(p50 {STREAM_TO_LAMBDA.p50_ms:.0f} ms, p99 {STREAM_TO_LAMBDA.p99_ms:.0f} ms)"
        ),
    )


def estimates(results: Mapping[str, Any]) -> dict[str, Estimate]:
    return {name: estimate(name, row) for name, row in results["latency"].items()}
