"""What stalled SSE readers cost the server on a busy channel, and that they are cut.

A reader that stops reading must not grow the server: the hub bounds each stream in
bytes (queued plus being written, ``SSE_QUEUE_BYTES``) and cuts it past that bound.
This runs the service as the container does, opens N streams from raw sockets with
a small receive window that are never read, publishes large events to their channel
until every one of them has been cut, and reports:

- the server's peak RSS growth while it held the N stalled streams, and per reader;
- how many readers were cut for lagging (all of them, or the bound failed);
- the most bytes the hub ever counted for one stream (``peak_held_bytes``).

Usage: ``python -m bench.sse_stalled [N [EVENTS]]``; ``python -m bench`` calls ``run``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any, cast

from bench.sse_fanout import free_port, rss_bytes, start_server, wait_until_serving
from eventlog import EventLog, schema
from eventlog.config import Settings

CHANNEL = "busy"
PAD_BYTES = 30_000
"""Each event's payload: near the 32 KiB event limit, so the lag builds quickly."""

RECEIVE_BUFFER_BYTES = 4096
SAMPLE_EVERY_EVENTS = 5


class StalledReader(asyncio.Protocol):
    """Subscribes, then never reads again: its window closes and the server's writes block."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.subscribed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.subscribed.done() and b"retry: " in data:
            self.subscribed.set_result(None)
            assert self.transport is not None
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribing"))


async def open_stalled(port: int, request: bytes) -> StalledReader:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    _, reader = await loop.create_connection(lambda: StalledReader(request), sock=sock)
    await reader.subscribed
    return reader


async def health(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    body: dict[str, Any] = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return body


async def measure(
    readers: int, events: int, log: EventLog, moto_url: str, *, token: str, environment: Any
) -> dict[str, Any]:
    port = free_port()
    server = start_server(port, moto_url, log.table_name, environment)
    request = (
        f"GET /channels/{CHANNEL}/stream HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    try:
        await wait_until_serving(port)
        warm = await open_stalled(port, request)  # imports, the channel's reader
        assert warm.transport is not None
        warm.transport.close()
        await asyncio.sleep(0.5)
        rss_before = rss_bytes(server.pid)
        stalled = [await open_stalled(port, request) for _ in range(readers)]
        peak = rss_bytes(server.pid)
        pad = "x" * PAD_BYTES
        published = 0
        stats: dict[str, Any] = {}
        # A paused reader never notices its cut, so the server's count says when all were.
        while published < events and stats.get("closed_overflow", 0) < readers:
            await asyncio.to_thread(log.publish, CHANNEL, {"pad": pad})
            published += 1
            if published % SAMPLE_EVERY_EVENTS == 0:
                peak = max(peak, rss_bytes(server.pid))
                stats = await health(port)
        await asyncio.sleep(1.0)  # the last cuts finish their one-second goodbye
        peak = max(peak, rss_bytes(server.pid))
        stats = await health(port)
        for reader in stalled:
            if reader.transport is not None:
                reader.transport.close()
        growth = peak - rss_before
        # Imported here: bench modules import no transport's code at import time.
        from sse_service.settings import SSE_QUEUE_BYTES

        return {
            "readers": readers,
            "events": published,
            "published_mb": published * PAD_BYTES / 2**20,
            "rss_growth_mb": growth / 2**20,
            "kb_per_reader": growth / readers / 1024,
            "cut": stats.get("closed_overflow", 0),
            "peak_held_kb": stats.get("peak_held_bytes", 0) / 1024,
            "bound_kb": SSE_QUEUE_BYTES / 1024,
        }
    finally:
        server.kill()
        server.wait(timeout=60)


def run(readers: int, events: int) -> dict[str, Any]:
    """Measure against a fresh moto server and SSE process; one row of figures."""
    import boto3
    import uvloop

    from bench.auth import ServerAuth
    from bench.moto import moto_server

    auth = ServerAuth()
    with moto_server() as moto_url:
        client = boto3.client("dynamodb", endpoint_url=moto_url)
        schema.create_table(client, schema.EVENTS_TABLE, "bench-stalled")
        log = EventLog(settings=Settings(events_table_name="bench-stalled"), client=client)
        return uvloop.run(
            measure(
                readers, events, log, moto_url, token=auth.token(), environment=auth.environment
            )
        )


def main(argv: list[str]) -> None:
    readers = int(argv[0]) if argv else 50
    events = int(argv[1]) if len(argv) > 1 else 600
    row = run(readers, events)
    print(
        f"{row['readers']} stalled readers, {row['events']} events of {PAD_BYTES // 1000} KB "
        f"({row['published_mb']:.0f} MiB): server RSS +{row['rss_growth_mb']:.1f} MiB "
        f"({row['kb_per_reader']:.0f} KiB per reader); cut {row['cut']}; most held by one "
        f"stream {row['peak_held_kb']:.0f} KiB (bound {row['bound_kb']:.0f} KiB)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
