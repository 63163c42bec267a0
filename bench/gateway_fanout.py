"""WebSocket fan-out through the local API Gateway, and what a tracked connection costs.

Three processes, as on AWS three different machines:

- *the gateway* (``local.websocket_gateway.LocalWebSocketApi`` with the real route
  handlers of ``websocket_api.routes``): holds the sockets, runs ``$connect`` and
  ``subscribe``, serves ``POST /@connections/{id}``;
- *the fan-out function*: a fresh interpreter that calls the real Lambda entry point
  ``websocket_api.fanout.handler`` with a DynamoDB stream record, ``FANOUT_WORKERS``
  set per run (1 is sequential), exactly as the event source mapping invokes it;
- *this process*: N raw WebSocket clients (asyncio sockets, no client library: a
  Python client would be slower than the server it measures), and DynamoDB (moto).

Per N and per worker count it reports the time from invoking the function to the
event's arrival on the first and on the last socket (median of the rounds): the
Query of the channel's subscribers plus N ``post_to_connection`` calls through the
gateway. It also reports the gateway's memory per open connection (RSS growth over
N connections) and the DynamoDB items a connection keeps (sizes by DynamoDB's rules).

Locally a post costs CPU, not network: every call is a loopback round trip, so more
threads cannot overlap waiting the way they do on AWS, where a post is a 5-20 ms
round trip. ``bench.websocket_fanout`` measures that case against a stub that adds
the delay; both are in ``results.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import secrets
import statistics
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from bench.sse_fanout import raise_file_limit, rss_bytes

CHANNEL = "fanout"
WARM_CHANNEL = "warm"
CONNECT_CONCURRENCY = 50
"""Connections opened at once: each runs ``$connect`` and ``subscribe`` (DynamoDB writes)."""
STEP_TIMEOUT_SECONDS = 120.0
EVENTS_TABLE = "bench-events"
CONNECTIONS_TABLE = "bench-connections"

DYNAMODB_ITEM_OVERHEAD_BYTES = 100
"""Storage overhead DynamoDB adds to every item, in the table and in each index.
Source: docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
and .../GSI.html ("Storage considerations for global secondary indexes")."""


# --- DynamoDB item sizes ----------------------------------------------------------------------


def number_bytes(raw: str) -> int:
    """Size of a DynamoDB number: about one byte per two significant digits, plus one."""
    digits = raw.lstrip("-").replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def item_bytes(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB counts it for capacity: names plus values (S and N here)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(str(value["S"]).encode())
        elif "N" in value:
            size += number_bytes(str(value["N"]))
        else:
            raise ValueError(f"unsized attribute type in {name}: {value}")
    return size


def connection_footprint(client: Any, table: str, connections: int) -> dict[str, float]:
    """Items per connection in the connections table, with and without storage overhead."""
    from websocket_api.connections import CONNECTION_ID, PK, SK

    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    total = sum(item_bytes(item) for item in items)
    # The by_connection index is keys only: its entry holds the index keys and the table keys.
    index = sum(item_bytes({key: item[key] for key in (CONNECTION_ID, PK, SK)}) for item in items)
    overhead = DYNAMODB_ITEM_OVERHEAD_BYTES * 2 * len(items)
    return {
        "items_per_connection": len(items) / connections,
        "item_bytes_per_connection": total / connections,
        "storage_bytes_per_connection": (total + index + overhead) / connections,
    }


# --- the gateway process ----------------------------------------------------------------------


def _gateway_main(pipe: Connection, environment: dict[str, str]) -> None:
    os.environ.update(environment)
    raise_file_limit()

    async def serve() -> None:
        from local.websocket_gateway import LocalWebSocketApi
        from websocket_api import authorizer
        from websocket_api.config import IDENTITY_SOURCE
        from websocket_api.routes import ROUTES

        # As deployed: the $connect REQUEST authorizer checks every connection's token.
        gateway = LocalWebSocketApi(
            routes=ROUTES,
            host="127.0.0.1",
            authorizer=authorizer.handler,
            identity_source=(IDENTITY_SOURCE,),
        )
        await gateway.start()
        # The handlers post replies through the environment's endpoint, as in the local stack.
        os.environ["WEBSOCKET_MANAGEMENT_ENDPOINT"] = gateway.management_endpoint
        pipe.send({"url": gateway.url, "management": gateway.management_endpoint})
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
        await gateway.stop()

    asyncio.run(serve())


# --- the fan-out function process -------------------------------------------------------------


def _fanout_main(pipe: Connection, environment: dict[str, str]) -> None:
    os.environ.update(environment)
    from websocket_api import fanout

    while True:
        record = pipe.recv()
        if record is None:
            return
        started = time.perf_counter()
        response = fanout.handler({"Records": [record]})
        pipe.send({"seconds": time.perf_counter() - started, "response": response})


def stream_record(encoded_event: str, sequence_number: int) -> dict[str, Any]:
    """A DynamoDB stream INSERT of an event, shaped as the event source mapping delivers it."""
    from eventlog import schema

    return {
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "SequenceNumber": str(sequence_number),
            "NewImage": {schema.EVENT: {"S": encoded_event}},
        },
    }


# --- raw WebSocket clients --------------------------------------------------------------------


class Client(asyncio.Protocol):
    """One WebSocket client: handshake, a masked subscribe frame, and a watch for markers.

    Server frames are unmasked, so a frame's JSON is readable in the bytes as they come:
    the client looks for ``subscribed`` and for the awaited event's ``"seq":N,``
    without parsing frames (a marker lies inside one frame's payload; one that is split
    between two reads is found through the tail kept from the previous read).
    """

    def __init__(self, fleet: Fleet, channel: str) -> None:
        self.fleet = fleet
        self.channel = channel
        self.tail = b""
        self.upgraded = False
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.transport.write(
            (
                f"GET {self.fleet.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        window = self.tail + data
        self.tail = window[-64:]
        if not self.upgraded:
            if b"\r\n\r\n" not in window:
                return
            if b" 101 " not in window.split(b"\r\n", 1)[0]:
                self._fail(ConnectionRefusedError(window.split(b"\r\n", 1)[0].decode()))
                return
            self.upgraded = True
            self.send_text(json.dumps({"action": "subscribe", "channel": self.channel}))
        if not self.subscribed.done() and b'"type":"subscribed"' in window:
            self.subscribed.set_result(None)
        marker = self.fleet.marker
        if marker is not None and marker in window:
            self.fleet.arrived(self)

    def send_text(self, text: str) -> None:
        payload = text.encode()
        if len(payload) >= 126:
            raise ValueError("a benchmark frame is short")
        mask = secrets.token_bytes(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        assert self.transport is not None
        self.transport.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def _fail(self, exc: Exception) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribing"))
        self.fleet.lost += 1


class Fleet:
    """N clients and the arrival times of the awaited event."""

    def __init__(self, *, port: int, token: str) -> None:
        self.port = port
        self.path = f"/?token={token}"
        self.clients: list[Client] = []
        self.marker: bytes | None = None
        self.arrivals: dict[int, float] = {}
        self.expected = 0
        self.everyone = asyncio.Event()
        self.lost = 0

    def arrived(self, client: Client) -> None:
        if id(client) not in self.arrivals:
            self.arrivals[id(client)] = time.perf_counter()
            if len(self.arrivals) == self.expected:
                self.everyone.set()

    async def open(self, count: int, channel: str = CHANNEL) -> list[Client]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect() -> Client:
            async with gate:
                _, client = await loop.create_connection(
                    lambda: Client(self, channel), "127.0.0.1", self.port
                )
                await asyncio.wait_for(client.subscribed, STEP_TIMEOUT_SECONDS)
                return client

        opened = await asyncio.gather(*(connect() for _ in range(count)))
        if channel == CHANNEL:
            self.clients += opened
        return opened

    def expect(self, seq: int) -> None:
        self.marker = b'"seq":%d,' % seq
        self.arrivals = {}
        self.expected = len(self.clients)
        self.everyone.clear()

    def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()


# --- the measurement --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_environment(base: dict[str, str], management: str, workers: int) -> dict[str, str]:
    return {**base, "WEBSOCKET_MANAGEMENT_ENDPOINT": management, "FANOUT_WORKERS": str(workers)}


async def _round(
    fleet: Fleet, pipe: Connection, log: Any, seq_counter: list[int], pids: tuple[int, int]
) -> dict[str, float]:
    event = await asyncio.to_thread(log.publish, CHANNEL, {"round": len(seq_counter)})
    seq_counter.append(event.seq)
    fleet.expect(event.seq)
    loop = asyncio.get_running_loop()
    cpu_before = [cpu_seconds(pid) for pid in pids]
    started = time.perf_counter()
    pipe.send(stream_record(event.encode(), event.seq))
    reply = await loop.run_in_executor(None, pipe.recv)
    await asyncio.wait_for(fleet.everyone.wait(), STEP_TIMEOUT_SECONDS)
    gateway_cpu, function_cpu = (
        cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)
    )
    if reply["response"]["batchItemFailures"]:
        raise RuntimeError(f"the fan-out reported a failure: {reply['response']}")
    first, last = min(fleet.arrivals.values()), max(fleet.arrivals.values())
    return {
        "all": last - started,
        "first": first - started,
        "spread": last - first,
        "handler": float(reply["seconds"]),
        "gateway_cpu": gateway_cpu,
        "function_cpu": function_cpu,
    }


async def _measure(
    *,
    counts: tuple[int, ...],
    workers: tuple[int, ...],
    rounds: int,
    token: str,
    gateway_pid: int,
    url: str,
    management: str,
    environment: dict[str, str],
    log: Any,
    dynamodb: Any,
) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    fleet = Fleet(port=port, token=token)
    context = multiprocessing.get_context("spawn")
    functions: dict[int, tuple[Any, Connection]] = {}
    for count in workers:
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_fanout_main,
            args=(theirs, _worker_environment(environment, management, count)),
            daemon=True,
        )
        process.start()
        functions[count] = (process, ours)
    rows: dict[str, Any] = {}
    try:
        # Warm the gateway: lazy imports, the handlers' first boto3 clients, threads.
        await fleet.open(2, WARM_CHANNEL)
        await asyncio.sleep(0.5)
        rss_before = rss_bytes(gateway_pid)
        seqs: list[int] = []
        for target in sorted(counts):
            opened = time.perf_counter()
            await fleet.open(target - len(fleet.clients))
            open_seconds = time.perf_counter() - opened
            per_workers: dict[str, Any] = {}
            for count, (process, pipe) in functions.items():
                pids = (gateway_pid, process.pid)
                await _round(fleet, pipe, log, seqs, pids)  # warm: connections, threads
                timings = [await _round(fleet, pipe, log, seqs, pids) for _ in range(rounds)]
                per_workers[str(count)] = {
                    "all_ms": statistics.median(t["all"] for t in timings) * 1000,
                    "first_ms": statistics.median(t["first"] for t in timings) * 1000,
                    "spread_ms": statistics.median(t["spread"] for t in timings) * 1000,
                    "handler_ms": statistics.median(t["handler"] for t in timings) * 1000,
                    # CPU per delivered frame: where a post's time goes when nothing waits.
                    "gateway_cpu_ms_per_post": statistics.median(t["gateway_cpu"] for t in timings)
                    * 1000
                    / target,
                    "function_cpu_ms_per_post": statistics.median(
                        t["function_cpu"] for t in timings
                    )
                    * 1000
                    / target,
                }
            rows[str(target)] = {"open_seconds": open_seconds, "workers": per_workers}
        await asyncio.sleep(0.5)
        rss_after = rss_bytes(gateway_pid)
        largest = max(counts)
        footprint = await asyncio.to_thread(
            connection_footprint, dynamodb, CONNECTIONS_TABLE, largest + 2
        )
        return {
            "connections": rows,
            "gateway_kb_per_connection": (rss_after - rss_before) / largest / 1024,
            "gateway_rss_mb": rss_after / 2**20,
            "lost": fleet.lost,
            **footprint,
        }
    finally:
        fleet.close()
        for process, pipe in functions.values():
            pipe.send(None)
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def run(*, counts: tuple[int, ...], workers: tuple[int, ...], rounds: int) -> dict[str, Any]:
    """Start moto, the gateway and one fan-out function per worker count; measure each N.

    The gateway runs the real ``$connect`` authorizer with a throwaway secret, and
    every client presents a token signed with it (``?token=``, as browsers do).
    """
    import boto3

    from bench.auth import ServerAuth
    from bench.moto import moto_server
    from eventlog import EventLog, schema
    from eventlog.config import Settings
    from websocket_api.connections import CONNECTIONS_TABLE as CONNECTIONS_SPEC

    raise_file_limit()
    auth = ServerAuth()
    with moto_server() as moto_url:
        dynamodb = boto3.client("dynamodb", endpoint_url=moto_url)
        schema.create_table(dynamodb, schema.EVENTS_TABLE, EVENTS_TABLE)
        schema.create_table(dynamodb, CONNECTIONS_SPEC, CONNECTIONS_TABLE)
        log = EventLog(settings=Settings(events_table_name=EVENTS_TABLE), client=dynamodb)
        root = Path(__file__).resolve().parent.parent
        environment = {
            **{key: value for key, value in os.environ.items() if key.startswith("AWS_")},
            **auth.environment,
            "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
            "EVENTS_TABLE_NAME": EVENTS_TABLE,
            "CONNECTIONS_TABLE_NAME": CONNECTIONS_TABLE,
            "PYTHONPATH": os.pathsep.join([str(root / "functions"), str(root)]),
        }
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        gateway = context.Process(target=_gateway_main, args=(theirs, environment), daemon=True)
        gateway.start()
        try:
            if not ours.poll(STEP_TIMEOUT_SECONDS):
                raise RuntimeError("the local WebSocket gateway did not start")
            started = ours.recv()
            assert gateway.pid is not None
            return asyncio.run(
                _measure(
                    counts=counts,
                    workers=workers,
                    rounds=rounds,
                    token=auth.token(),
                    gateway_pid=gateway.pid,
                    url=started["url"],
                    management=started["management"],
                    environment=environment,
                    log=log,
                    dynamodb=dynamodb,
                )
            )
        finally:
            ours.send("stop")
            gateway.join(timeout=15)
            if gateway.is_alive():
                gateway.kill()
