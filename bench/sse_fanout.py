"""How many streams one SSE process holds, what each costs, and how fast one event reaches all.

Runs the service exactly as the container does (``python -m sse_service``:
uvicorn with uvloop and httptools) against a moto server, opens N streams to one
channel from raw asyncio sockets (a Python HTTP client would be slower than the
server it measures), then publishes events and times their arrival on every
stream. For each N it prints:

- streams held: streams subscribed (their ``retry:`` preamble arrived);
- memory per stream: the server's RSS growth from N streams, divided by N;
- publish -> first / all: from the publish call to the event's arrival on the
  first / the last stream (includes up to one reader interval, 0.25 s by default,
  before the shared reader finds the event);
- fan-out: first to last arrival, the cost of handing one event to N streams.

Usage: ``python -m bench.sse_fanout [N ...]`` (default: 1000 10000; run as a module:
as a script, ``bench/moto.py`` would shadow the moto package); ``python -m bench`` calls
``run`` for its N and puts the figures in ``results.json``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

from eventlog import EventLog, schema  # noqa: E402
from eventlog.config import Settings  # noqa: E402

CHANNEL = "bench"
ROUNDS = 7
CONNECT_CONCURRENCY = 500
BROADCAST_TIMEOUT_SECONDS = 60


def raise_file_limit() -> int:
    """Lift the soft open-files limit to the hard one, for this process and the server."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Stream(asyncio.Protocol):
    """One SSE client: knows when it subscribed and when each awaited event arrived."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.tail = b""
        self.subscribed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.bench.request)

    def data_received(self, data: bytes) -> None:
        window = self.tail + data
        self.tail = window[-64:]  # a marker may be split between two reads
        if not self.subscribed.done() and b"retry: " in window:
            self.subscribed.set_result(None)
        marker = self.bench.marker
        if marker is not None and marker in window:
            self.bench.arrived(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribing"))
        self.bench.lost += 1


class Bench:
    def __init__(self, port: int, *, token: str) -> None:
        self.port = port
        self.request = (
            f"GET /channels/{CHANNEL}/stream HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        self.marker: bytes | None = None
        self.arrivals: list[float] = []
        self.seen: set[int] = set()
        self.all_arrived = asyncio.Event()
        self.expected = 0
        self.lost = 0

    def arrived(self, stream: Stream) -> None:
        if id(stream) in self.seen:
            return
        self.seen.add(id(stream))
        self.arrivals.append(time.perf_counter())
        if len(self.arrivals) == self.expected:
            self.all_arrived.set()

    async def open(self, count: int) -> list[Stream]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect() -> Stream:
            async with gate:
                _, stream = await loop.create_connection(
                    lambda: Stream(self), "127.0.0.1", self.port
                )
                await stream.subscribed
                return stream

        return await asyncio.gather(*(connect() for _ in range(count)))

    async def broadcast(self, log: EventLog, streams: list[Stream], seq: int) -> dict[str, float]:
        self.marker = b"id: %d\n" % seq
        self.arrivals, self.seen, self.expected = [], set(), len(streams)
        self.all_arrived.clear()
        start = time.perf_counter()
        event = await asyncio.to_thread(log.publish, CHANNEL, {"round": seq})
        assert event.seq == seq, (event.seq, seq)
        await asyncio.wait_for(self.all_arrived.wait(), timeout=BROADCAST_TIMEOUT_SECONDS)
        first, last = min(self.arrivals), max(self.arrivals)
        return {"first": first - start, "all": last - start, "fanout": last - first}


def start_server(
    port: int, moto_url: str, table: str, environment: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **environment,
        "PYTHONPATH": str(ROOT / "functions"),
        "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        "EVENTS_TABLE_NAME": table,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SSE_MAX_STREAMS": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "sse_service"], env=env)


async def wait_until_serving(port: int) -> None:
    for _ in range(400):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        status = await reader.readline()
        writer.close()
        if b" 200 " in status:
            return
    raise RuntimeError("the server did not start")


async def measure(
    count: int,
    log: EventLog,
    moto_url: str,
    *,
    rounds: int = ROUNDS,
    token: str,
    server_environment: Mapping[str, str],
) -> dict[str, Any]:
    port = free_port()
    server = start_server(port, moto_url, log.table_name, server_environment)
    try:
        await wait_until_serving(port)
        bench = Bench(port, token=token)
        warm = await bench.open(1)  # first stream: lazy imports, the channel's reader
        await bench.broadcast(log, warm, log.head(CHANNEL) + 1)
        await asyncio.sleep(0.5)
        rss_before = rss_bytes(server.pid)
        opened = time.perf_counter()
        streams = await bench.open(count)
        open_seconds = time.perf_counter() - opened
        await asyncio.sleep(1.0)
        rss_after = rss_bytes(server.pid)
        everyone = warm + streams
        timings = []
        for _ in range(rounds):
            timings.append(await bench.broadcast(log, everyone, log.head(CHANNEL) + 1))
            await asyncio.sleep(0.3)
        held = len(everyone) - bench.lost
        for stream in everyone:
            if stream.transport is not None:
                stream.transport.close()
        return {
            "streams": count,
            "held": held,
            "open_seconds": open_seconds,
            "kb_per_stream": (rss_after - rss_before) / count / 1024,
            "rss_mb": rss_after / 2**20,
            "first_ms": statistics.median(r["first"] for r in timings) * 1000,
            "all_ms": statistics.median(r["all"] for r in timings) * 1000,
            "fanout_ms": statistics.median(r["fanout"] for r in timings) * 1000,
            "fanout_max_ms": max(r["fanout"] for r in timings) * 1000,
            "rounds": len(timings),
        }
    finally:
        # No graceful drain (SSE_DRAIN_SECONDS) for a benchmark's server: the figures are taken.
        server.kill()
        server.wait(timeout=60)


def run(counts: list[int], *, rounds: int = ROUNDS) -> list[dict[str, Any]]:
    """Measure each N in turn, each against a fresh server process; return one row per N.

    The server verifies tokens as deployed: it gets a throwaway secret, and every
    stream presents a token signed with it.
    """
    import boto3
    import uvloop

    from bench.auth import ServerAuth
    from bench.moto import moto_server

    raise_file_limit()
    auth = ServerAuth()
    token = auth.token()
    results = []
    with moto_server() as moto_url:
        client = boto3.client("dynamodb", endpoint_url=moto_url)
        schema.create_table(client, schema.EVENTS_TABLE, "bench-events")
        log = EventLog(settings=Settings(events_table_name="bench-events"), client=client)
        log.publish(CHANNEL, "first")
        for count in counts:
            results.append(
                uvloop.run(
                    measure(
                        count,
                        log,
                        moto_url,
                        rounds=rounds,
                        token=token,
                        server_environment=auth.environment,
                    )
                )
            )
    return results


def main(counts: list[int]) -> None:
    limit = raise_file_limit()
    print(f"open-files limit {limit}; {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    print(
        f"{'streams':>8} {'held':>7} {'open s':>7} {'KB/stream':>10} {'RSS MB':>7} "
        f"{'pub->1st ms':>12} {'pub->all ms':>12} {'fan-out ms':>11} {'(max)':>7}"
    )
    for r in run(counts):
        print(
            f"{r['streams']:>8} {r['held']:>7} {r['open_seconds']:>7.1f} "
            f"{r['kb_per_stream']:>10.1f} {r['rss_mb']:>7.0f} {r['first_ms']:>12.0f} "
            f"{r['all_ms']:>12.0f} {r['fanout_ms']:>11.0f} {r['fanout_max_ms']:>7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1000, 10_000])
