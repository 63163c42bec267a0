"""Measure the WebSocket transport's two costs that matter: cold imports and fan-out time.

1. Import time of each Lambda entry module in a fresh interpreter (median of
   several runs), next to a bare ``import boto3``: the handlers load no SDK at
   import time, so their cold start pays for boto3 only when a call needs it.
2. Fan-out of one event to N connections through the real ``Fanout`` and its
   @connections client (``management.new_client``), against a local server that
   answers ``POST /@connections/{id}`` like API Gateway (200, after a delay
   that stands in for the network), sequentially and with thread pools.

The server runs in its own process so it does not compete for this process's
GIL. Run: ``PYTHONPATH=functions .venv/bin/python bench/websocket_fanout.py``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
sys.path.insert(0, str(FUNCTIONS))

IMPORTS = {
    "import boto3 (bare)": "import boto3",
    "websocket_api.routes (7 route handlers)": "import websocket_api.routes",
    "websocket_api.fanout (stream consumer)": "import websocket_api.fanout",
    "routes + first post client": (
        "import websocket_api.routes as r; "
        "r.management.new_client('https://x.execute-api.us-east-1.amazonaws.com/ws')"
    ),
}


# --- 1. import time ---------------------------------------------------------------------------


def import_seconds(
    statement: str,
    *,
    cache: str,
    shipped: bool,
    packages: tuple[str, ...] | None = None,
) -> float:
    """Seconds ``statement`` takes in a fresh interpreter (interpreter start-up excluded).

    Every module's bytecode comes from the warm cache ``cache``, except, when
    ``shipped``, the project's packages: they are copied fresh without
    ``__pycache__`` and compiled from source, as from a Lambda zip (read-only, so
    nothing is written back either). ``packages`` are the folders of ``functions/``
    the asset ships (default: all of them; only what is imported is compiled).
    """
    if packages is None:
        packages = tuple(
            sorted(p.name for p in FUNCTIONS.iterdir() if (p / "__init__.py").exists())
        )
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {
        **os.environ,
        "PYTHONPYCACHEPREFIX": cache,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="bench-zip-") as zip_dir:
        if shipped:
            for package in packages:
                shutil.copytree(
                    FUNCTIONS / package,
                    Path(zip_dir) / package,
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
            env["PYTHONPATH"] = zip_dir
        else:
            env["PYTHONPATH"] = str(FUNCTIONS)
        flags = ["-B"] if shipped else []
        result = subprocess.run(
            [sys.executable, *flags, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return float(result.stdout.strip())


def measure_imports(runs: int) -> None:
    cache = tempfile.mkdtemp(prefix="bench-pyc-")
    print(f"Import time, fresh interpreter, median of {runs} (ms)")
    print(f"  {'module':44} {'all compiled':>13} {'as shipped':>11}")
    for label, statement in IMPORTS.items():
        import_seconds(statement, cache=cache, shipped=False)  # fill the bytecode cache
        compiled = [import_seconds(statement, cache=cache, shipped=False) for _ in range(runs)]
        shipped = [import_seconds(statement, cache=cache, shipped=True) for _ in range(runs)]
        print(
            f"  {label:44} {statistics.median(compiled) * 1000:13.1f} "
            f"{statistics.median(shipped) * 1000:11.1f}"
        )
    print(
        "  'as shipped': the project's packages compiled from source, as from a Lambda zip\n"
        "  without __pycache__ (the runtime's boto3 and standard library are compiled)."
    )


# --- 2. fan-out -------------------------------------------------------------------------------


class _ConnectionsApi(BaseHTTPRequestHandler):
    """``POST /@connections/{id}`` answered like API Gateway: 200, empty body, kept alive."""

    protocol_version = "HTTP/1.1"
    delay = 0.005
    gone: frozenset[str] = frozenset()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        time.sleep(self.delay)
        connection_id = unquote(self.path.rsplit("/", 1)[-1])
        if connection_id in self.gone:
            body = b'{"message":null}'
            self.send_response(410)
            self.send_header("x-amzn-ErrorType", "GoneException")
        else:
            body = b""
            self.send_response(200)
        self.send_header("x-amzn-RequestId", "bench")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(port_queue: Any, delay: float, gone: frozenset[str]) -> None:
    _ConnectionsApi.delay = delay
    _ConnectionsApi.gone = gone
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ConnectionsApi)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


class _Subscribers:
    """Stands in for the connections table: the benchmark measures posting, not DynamoDB."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.forgotten: list[str] = []

    def receivers(self, channel: str, *, page_size: int | None = None) -> Iterator[list[Any]]:
        from websocket_api.connections import Receiver

        receivers = [Receiver(connection_id) for connection_id in self.ids]
        size = page_size or 1000
        yield from (receivers[i : i + size] for i in range(0, len(receivers), size))

    def forget(self, connection_id: str) -> int:
        self.forgotten.append(connection_id)
        return 1


def measure_fanout(
    connections: int,
    delay: float,
    workers: list[int],
    gone: int,
    *,
    rounds: int = 1,
    quiet: bool = False,
) -> dict[int, float]:
    """Seconds to post one event to every connection, per worker count (median of ``rounds``;
    printed unless quiet)."""
    from websocket_api import frames, management
    from websocket_api.fanout import Fanout

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    ids = [f"conn{n:05d}=" for n in range(connections)]
    gone_ids = frozenset(ids[:: max(1, connections // gone)][:gone]) if gone else frozenset()
    queue: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(queue, delay, gone_ids), daemon=True)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{queue.get(timeout=10)}"
        frame = frames.event(
            '{"channel":"news","seq":1,"data":{"x":1},"time":"2026-11-28T08:47:00.000Z"}'
        )
        say = (lambda *_: None) if quiet else print
        say(
            f"\nFan-out of one event to {connections} connections "
            f"({len(gone_ids)} gone), server delay {delay * 1000:.0f} ms per post"
        )
        say(f"  {'workers':>8} {'seconds':>9} {'posts/s':>9} {'speed-up':>9}")
        baseline = None
        seconds: dict[int, float] = {}
        for count in workers:
            client = management.new_client(endpoint, max_pool_connections=count)
            subscribers = _Subscribers(ids)
            # A stand-in for the connections table: only the reads the fan-out makes.
            fan = Fanout(connections=cast(Any, subscribers), client=client, workers=count)
            fan.deliver("news", frame)  # warm up: connections opened, threads started
            timings = []
            for _ in range(rounds):
                subscribers.forgotten.clear()
                started = time.perf_counter()
                delivery = fan.deliver("news", frame)
                timings.append(time.perf_counter() - started)
            elapsed = statistics.median(timings)
            fan._executor.shutdown()
            assert delivery.sent == connections - len(gone_ids), delivery
            assert sorted(subscribers.forgotten) == sorted(gone_ids)
            baseline = baseline or elapsed
            seconds[count] = elapsed
            label = "1 (seq.)" if count == 1 else str(count)
            say(
                f"  {label:>8} {elapsed:9.3f} {connections / elapsed:9.0f} "
                f"{baseline / elapsed:8.1f}x"
            )
    finally:
        server.terminate()
        server.join()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per import")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=5.0, help="server time per post")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    parser.add_argument("--gone", type=int, default=0, help="connections answering 410")
    parser.add_argument("--rounds", type=int, default=3, help="deliveries per worker count")
    parser.add_argument("--skip-imports", action="store_true")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if not args.skip_imports:
        measure_imports(args.runs)
    measure_fanout(
        args.connections, args.delay_ms / 1000, args.workers, args.gone, rounds=args.rounds
    )


if __name__ == "__main__":
    main()
