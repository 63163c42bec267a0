"""Publish -> deliver latency, what an event costs on the wire, and what an idle client costs.

Everything goes through the reference client (``client.open_transport``), one
transport at a time, against the same stack. One process publishes and receives,
so one clock times both ends:

- *latency*: from just before the publish call to the moment the subscription hands
  the event to the application. It includes the publish itself (an HTTP POST, or a
  WebSocket frame, then the log's counter update and put) and whatever the transport waits:
  the long poll's re-read pause (polling), the shared reader's interval (SSE), the
  stream poller and the fan-out (WebSocket). Before each publish the benchmark
  pauses a random time (seeded), so events land at every phase of those loops.
- *per delivered event*: the subscription's ``TransportStats`` over the timed events,
  divided by their number (requests sent, bytes sent and received, as the client
  counts them: HTTP/1.1 heads and bodies, WebSocket payloads; no TLS or TCP). The
  publisher's side is reported separately.
- *idle, per minute*: a subscription on a channel nobody publishes to, for a window,
  every transport at once (while the latency is measured on other channels). The
  bytes of one cycle (one empty long poll, one
  heartbeat, one ping and pong) are scaled to the production interval:
  ``per minute = bytes per cycle x 60 / interval``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from bench.plan import SEED, Idle, Plan
from client import ClientOptions, Subscription, Transport, TransportStats, open_transport
from client.auth import TokenSource
from client.transports import TransportName
from eventlog.endpoints import Endpoints

TRANSPORTS: tuple[TransportName, ...] = ("polling", "sse", "websocket")
DELIVERY_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (no interpolation: every figure is a measured sample)."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def _delta(after: TransportStats, before: TransportStats) -> dict[str, int]:
    a, b = after.as_dict(), before.as_dict()
    return {key: a[key] - b[key] for key in a}


def _copy(stats: TransportStats) -> TransportStats:
    return replace(stats)


async def _next_event(subscription: Subscription) -> Any:
    return await asyncio.wait_for(anext(subscription), DELIVERY_TIMEOUT_SECONDS)


async def measure_transport(
    name: TransportName,
    endpoints: Endpoints,
    *,
    plan: Plan,
    token: TokenSource,
    channel: str,
) -> dict[str, Any]:
    rng = random.Random(f"{SEED}:{plan.name}:{name}")  # noqa: S311 (pauses, not secrets)
    latencies: list[float] = []
    acks: list[float] = []
    async with open_transport(name, endpoints, token=token) as transport:
        subscription = await transport.subscribe(channel)
        sub_before, pub_before = _copy(subscription.stats), _copy(transport.stats)
        for index in range(plan.warmup_events + plan.latency_events):
            if index == plan.warmup_events:
                sub_before, pub_before = _copy(subscription.stats), _copy(transport.stats)
            await asyncio.sleep(rng.uniform(0, plan.pause_max_seconds))
            started = time.perf_counter()
            publish = asyncio.create_task(_timed(transport.publish(channel, {"n": index})))
            event = await _next_event(subscription)
            delivered = time.perf_counter()
            published, ack_seconds = await publish
            if event.seq != published.seq:
                raise RuntimeError(f"{name}: expected seq {published.seq}, got {event.seq}")
            if index >= plan.warmup_events:
                latencies.append(delivered - started)
                acks.append(ack_seconds)
        subscriber = _delta(subscription.stats, sub_before)
        publisher = _delta(transport.stats, pub_before)
    events = plan.latency_events
    if name == "websocket":
        # One socket carries both roles: its transport counts every frame received,
        # the subscription only its channel's, so the rest are the acknowledgements.
        publisher["bytes_received"] -= subscriber["bytes_received"]
    ms = [value * 1000 for value in latencies]
    return {
        "latency_ms": {
            "p50": percentile(ms, 0.50),
            "p95": percentile(ms, 0.95),
            "p99": percentile(ms, 0.99),
            "mean": statistics.fmean(ms),
            "max": max(ms),
            "samples": len(ms),
        },
        "publish_ack_ms": {"p50": percentile([a * 1000 for a in acks], 0.50)},
        # What the transport adds once the event is written: deliver minus the publish call
        # (negative when the event arrives before the publisher's acknowledgement).
        "after_ack_ms": {
            "p50": percentile([(t - a) * 1000 for t, a in zip(latencies, acks, strict=True)], 0.50)
        },
        "per_event": {
            "subscriber_requests": subscriber["requests"] / events,
            "subscriber_bytes_received": subscriber["bytes_received"] / events,
            "subscriber_bytes_sent": subscriber["bytes_sent"] / events,
            "publisher_requests": publisher["requests"] / events,
            "publisher_bytes_sent": publisher["bytes_sent"] / events,
            "publisher_bytes_received": publisher["bytes_received"] / events,
        },
    }


async def _timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await awaitable
    return result, time.perf_counter() - started


# --- idle clients ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _IdleClient:
    key: str
    transport: TransportName
    options: ClientOptions
    measured_interval: float
    production_interval: float
    counts: Callable[[Transport, Subscription], TransportStats]
    answers: Callable[[dict[str, int]], int]
    """Cycles whose answer arrived in the window (a request still waiting at its end has
    sent its bytes but not received any, so bytes sent and received are divided apart)."""


def _idle_clients(idle: Idle, production: Idle) -> list[_IdleClient]:
    base = ClientOptions()
    return [
        _IdleClient(
            key="polling_long",
            transport="polling",
            options=replace(base, wait_seconds=idle.long_poll_wait_seconds),
            measured_interval=idle.long_poll_wait_seconds,
            production_interval=production.long_poll_wait_seconds,
            counts=lambda _t, s: s.stats,
            answers=lambda d: d["not_modified"],  # an idle channel's reads all answer 304
        ),
        _IdleClient(
            key="polling_short",
            transport="polling",
            options=replace(
                base, wait_seconds=0, short_poll_interval_seconds=idle.short_poll_interval_seconds
            ),
            measured_interval=idle.short_poll_interval_seconds,
            production_interval=production.short_poll_interval_seconds,
            counts=lambda _t, s: s.stats,
            answers=lambda d: d["not_modified"],
        ),
        _IdleClient(
            key="sse",
            transport="sse",
            options=base,
            measured_interval=idle.sse_heartbeat_seconds,
            production_interval=production.sse_heartbeat_seconds,
            counts=lambda _t, s: s.stats,
            answers=lambda d: d["heartbeats"],
        ),
        _IdleClient(
            key="websocket",
            transport="websocket",
            options=replace(base, keepalive_seconds=idle.websocket_keepalive_seconds),
            measured_interval=idle.websocket_keepalive_seconds,
            production_interval=production.websocket_keepalive_seconds,
            # Pings belong to the connection, not to a subscription.
            counts=lambda t, _s: t.stats,
            answers=lambda d: d["requests"],  # a pong follows its ping within milliseconds
        ),
    ]


async def _idle_one(
    client: _IdleClient,
    endpoints: Endpoints,
    *,
    token: TokenSource,
    window: float,
    channel: str,
) -> dict[str, float]:
    async with open_transport(
        client.transport, endpoints, token=token, options=client.options
    ) as transport:
        subscription = await transport.subscribe(channel)
        before = _copy(client.counts(transport, subscription))
        await asyncio.sleep(window)
        delta = _delta(client.counts(transport, subscription), before)
    answers = client.answers(delta)
    if answers == 0:
        raise RuntimeError(
            f"idle {client.key}: no cycle in {window:g} s (interval {client.measured_interval:g} s)"
        )
    requests = delta["requests"]
    requests_per_cycle = 1.0 if requests else 0.0
    sent_per_cycle = delta["bytes_sent"] / requests if requests else 0.0
    per_cycle_bytes = sent_per_cycle + delta["bytes_received"] / answers
    per_minute_cycles = 60 / client.production_interval
    return {
        "requests_per_minute": requests_per_cycle * per_minute_cycles,
        "bytes_per_minute": per_cycle_bytes * per_minute_cycles,
        "bytes_per_cycle": per_cycle_bytes,
        "cycles_measured": answers,
        "measured_interval_seconds": client.measured_interval,
        "production_interval_seconds": client.production_interval,
        "window_seconds": window,
    }


async def measure_idle(
    endpoints: Endpoints, *, idle: Idle, production: Idle, token: TokenSource
) -> dict[str, dict[str, float]]:
    clients = _idle_clients(idle, production)
    results = await asyncio.gather(
        *(
            _idle_one(
                client,
                endpoints,
                token=token,
                window=idle.window_seconds,
                channel=f"idle.{client.key}",
            )
            for client in clients
        )
    )
    return {client.key: result for client, result in zip(clients, results, strict=True)}


async def measure(
    endpoints: Endpoints, *, plan: Plan, idle: Idle, production: Idle, token: TokenSource
) -> dict[str, Any]:
    """Latency and per-event costs of each transport in turn; the idle clients meanwhile.

    The idle clients sit on their own channels while the transports are timed: they
    cost the servers one short poll a second, and the run the length of their window.
    """
    idle_task = asyncio.create_task(
        measure_idle(endpoints, idle=idle, production=production, token=token)
    )
    transports: dict[str, Any] = {}
    try:
        for name in TRANSPORTS:
            transports[name] = await measure_transport(
                name, endpoints, plan=plan, token=token, channel=f"latency.{name}"
            )
    except BaseException:
        idle_task.cancel()
        raise
    return {"transports": transports, "idle": await idle_task}
