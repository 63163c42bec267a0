"""For each target a run missed: the measured cause, and what would reach it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog.config import SSE_READER_INTERVAL_SECONDS


def why_missed(results: Mapping[str, Any]) -> list[str]:
    """For each missed target: the measured cause, and what would reach it."""
    targets = results["targets"]
    sse = max(results["fanout"]["sse"]["rows"], key=lambda r: r["n"])
    ws = max(results["fanout"]["websocket"]["rows"], key=lambda r: r["n"])
    stub = results["fanout"]["websocket_stub"]
    lat = results["latency"]
    notes = {
        "sse_kb_per_stream": (
            f"**SSE memory per stream ({sse['kb_per_stream']:.0f} KB).** Each open stream is "
            "uvicorn's protocol, parser and request cycle with its task, the stream route's "
            "coroutine and the hub's subscriber (`sse_service.stream`: no middleware, one "
            "task, the heartbeat a timer); about 17 KB measured when it was built. A figure "
            "well above that is something new held per stream: `tracemalloc` of the server "
            "during the benchmark, grouped by file, names it."
        ),
        "sse_fanout_ms": (
            f"**SSE fan-out to {sse['n']:,} streams ({sse['fanout_ms']:.0f} ms).** The feed "
            "writes one joined body to every caught-up stream from its own task "
            "(`sse_service.hub`), so what remains is per stream: uvicorn's `send` and one "
            f"socket write, about {sse['fanout_ms'] * 1000 / sse['n']:.0f} us each here. "
            "The benchmark's 10,000 clients read on the same two cores, so other work on "
            "the machine during the run shows here first. What would reach 300 ms on a "
            "busy machine: streams spread over one process per vCPU (each with its own "
            "cap), at the price of one feed, and one broker subscription, per process."
        ),
        "sse_streams_held": (
            f"**SSE streams held ({sse['held']:,} of {sse['n']:,}).** Streams were lost "
            "while open: check the open-files limit of the machine."
        ),
        "websocket_fanout_ms": (
            f"**WebSocket fan-out to {ws['n']:,} connections ({ws['concurrent_ms']:,.0f} ms).** "
            f"The first frame arrived after {ws['first_ms']:,.0f} ms: the Query of the "
            "channel's subscribers on moto, which serves one request at a time. Then the "
            f"fan-out function spends {ws['function_cpu_ms_per_post']:.2f} ms of CPU per "
            "post and the local gateway "
            f"{ws['gateway_cpu_ms_per_post']:.2f} ms, on the same two cores as the "
            "benchmark's clients. What would reach 1 s: a quieter machine, or splitting a "
            "channel's subscribers over several invocations (one per page of the Query)."
        ),
        "websocket_cpu_ms_per_post": (
            f"**WebSocket fan-out CPU per post ({ws['function_cpu_ms_per_post']:.2f} ms).** "
            "Each post is one SigV4 signature (botocore's signer) and one HTTP request on a "
            "kept-alive connection (`websocket_api.management.ConnectionsClient`); the "
            "rest is the thread pool's hand-offs and the subscriber Query's parsing. A "
            "figure above 0.5 ms on an idle machine means something in that path grew."
        ),
        "websocket_concurrency_gain_stub": (
            f"**Sequential against concurrent, with a {stub['delay_ms']:g} ms round trip "
            f"({stub['sequential_over_concurrent']:.1f}x).** With 16 threads the ideal gain "
            "is 16x; the fan-out and the stub share two cores, so the gain stops where their "
            f"CPU per post does ({ws['function_cpu_ms_per_post']:.2f} ms in the fan-out), "
            "earlier when other processes take the cores during the run."
        ),
        "websocket_p50_ms": (
            f"**WebSocket p50 latency ({lat['websocket']['p50_ms']:.0f} ms).** The path is "
            "publish (a frame, a route Lambda, the log's counter update and put: "
            f"{lat['websocket']['publish_ack_p50_ms']:.0f} ms to the acknowledgement "
            "locally), the wait for the stream mapping's next poll (every 50 ms locally, "
            "so 25 ms on average; Lambda polls a DynamoDB stream about four times a second, "
            "125 ms on average), the fan-out's subscriber Query (about 10 ms on moto, which "
            "serves one request at a time, the relay's and the publishers' included) and "
            "one post. A slower figure on a busy machine is mostly those moto requests "
            "queueing. A shorter local poll would only hide the stream hop: on AWS it "
            "alone has a p50 of about 200 ms (bitesizedserverless.com, 'serverless "
            "messaging latency compared'). What would reach 50 ms honestly: deliver from "
            "the publish route itself to the subscribers of a channel that has few "
            "(skipping the stream hop, at the price of a second delivery path)."
        ),
        "sse_p50_ms": (
            f"**SSE p50 latency ({lat['sse']['p50_ms']:.0f} ms).** Measured from the publish "
            f"call, which alone takes {lat['sse']['publish_ack_p50_ms']:.0f} ms here (an HTTP "
            "POST, the log's counter update and put on moto); what SSE adds after it is "
            f"{lat['sse']['after_ack_p50_ms']:.0f} ms at the median: the stream poller, the "
            "broker relay's publish and the task's push to the stream (with the broker "
            "off, half the reader interval, "
            f"{SSE_READER_INTERVAL_SECONDS * 500:.0f} ms, instead). The relay follows the "
            "same stream hop as the WebSocket fan-out, so the two should be close; a "
            "miss here is the local stream poller or the relay's invocation."
        ),
    }
    hot = results["hot_channel"]["rows"]
    most = max(hot, key=lambda r: r["publishers"])
    notes["hot_channel_failures"] = (
        "**Failed publishes on a hot channel.** A publish fails only when its seq was "
        "filled by a reader (it took longer than `SEQ_ABANDONED_AFTER_SECONDS`) five "
        "times over, or when DynamoDB refuses it: the local server's log says which."
    )
    notes["hot_channel_scaling"] = (
        "**Hot-channel throughput below the one-publisher figure.** Racing publishers "
        "do not retry each other's work any more, so a lower figure is the server "
        "running out of CPU: locally two processes serve moto and every other server, "
        "and share the machine with the benchmark's clients."
    )
    notes["hot_channel_p99_ms"] = (
        f"**Hot-channel p99 with {most['publishers']} publishers ({most['p99_ms']:,.0f} ms).** "
        f"The local server took {most['publishes_per_second']:.0f} publishes a second, so "
        f"{most['publishers']} publishers that each wait for their reply queue for "
        f"{most['publishers'] / most['publishes_per_second'] * 1000:,.0f} ms on average "
        "(Little's law); the tail is that queue on a busy machine, and a new channel's "
        "first publishes (each looks for the channel's newest event before the head "
        "exists). What would reach 1 s: fewer other processes on the machine during the "
        "run; each publish is two moto requests, served one at a time. On AWS the counter "
        "and the put take a few milliseconds each and a partition takes about 500 "
        "publishes a second."
    )
    idle_sse = results["sse_idle"]
    notes["sse_idle_log_reads_per_second"] = (
        f"**SSE log reads with idle channels ({idle_sse['log_reads_per_second']:.1f} a "
        "second).** A feed pushed by the broker reads the log only to catch up: when its "
        "subscription is confirmed, after a gap in the pushed seqs, and while such a read "
        "stops at a seq still being written. Reads with nothing published mean the broker "
        "was not connected (the feeds poll meanwhile: `/healthz` says `broker`), or the "
        "stack ran with `--broker off`."
    )
    if "import_polling" in targets:
        notes["import_polling"] = (
            f"**Polling import ({targets['import_polling']['value']:.2f}x a bare `import "
            "boto3`).** Most of it is FastAPI and pydantic, which the app needs to serve any "
            "request (FastAPI also imports `pydantic.v1`, to check each route's parameters, "
            "and OpenTelemetry's API); `import fastapi` alone took about 1.7x a bare "
            "`import boto3` on the development machine (2026-12-02). The app's own modules "
            "are a small part, and PyJWT and boto3 are left to the first request that needs "
            "them. What would reach it: SnapStart "
            "(`-c pollingSnapStart=on`), whose restored environments do not import at all; "
            "or the event routes served without FastAPI, as the WebSocket handlers are, at "
            "the price of the Lambdalith's one app for uvicorn and Lambda and its schema."
        )
    lines = []
    for key, target in targets.items():
        if target["met"]:
            continue
        if key in notes:
            lines.append(notes[key])
        elif key.startswith("import_"):
            lines.append(
                f"**{target['what']} ({target['value']:.2f}).** Its module imports an SDK or "
                "library at load time; import it on first use instead."
            )
    return lines
