"""The local stack's DynamoDB: a moto server in a process of its own.

DynamoDB is a remote service, and the local stack treats moto as one: its own
process, reached over HTTP, with the patches of ``local.moto_fidelity`` that make
it answer as DynamoDB does. Its own process because moto is the busiest part of
the stack: every publish is two requests, every SSE reader queries it four times
a second, and moto spends a few milliseconds of CPU on each. Sharing one
interpreter with the servers it answers, it held a hot channel to one core (about
55 publishes/s with 32 publishers); in a process of its own it has the other.

``python -m local.dynamodb --port N`` prints its URL on its first line of output,
then serves until its standard input closes, which is how it stops with the stack
that started it, whichever way that stack ends (Ctrl-C, an error, or a kill), with
no signal handling to get right on each platform.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0
ROOT = Path(__file__).resolve().parent.parent


class DynamoDbDidNotStart(RuntimeError):
    """The DynamoDB process ended, or said nothing, before it served."""


def serve(port: int, *, announce: IO[str], until_closed: IO[bytes]) -> None:
    """Serve moto on ``port`` (0: any free one) until ``until_closed`` reaches its end."""
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import WSGIRequestHandler

    from local.moto_fidelity import dynamodb_fidelity

    # One line per request otherwise; the stream poller alone makes several a second.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Keep-alive, as DynamoDB's endpoints do: botocore keeps a pool of connections, and a
    # connection per request cost a TCP handshake and a new server thread each time.
    WSGIRequestHandler.protocol_version = "HTTP/1.1"
    with dynamodb_fidelity():
        server: Any = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        server.start()
        try:
            host, bound = server.get_host_and_port()
            print(f"http://{host}:{bound}", file=announce, flush=True)
            while until_closed.read(1024):
                pass
        finally:
            server.stop()


@contextlib.contextmanager
def dynamodb_process(port: int) -> Iterator[str]:
    """Start ``python -m local.dynamodb`` on ``port``; yield its URL; stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local.dynamodb", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)])},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # Out of the terminal's process group: Ctrl-C stops the stack, and the stack stops
        # this last, after the servers that still write to it on their way out.
        start_new_session=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        url = _first_line(process.stdout, timeout=START_TIMEOUT_SECONDS)
        if not url.startswith("http://"):
            process.kill()
            raise DynamoDbDidNotStart(
                f"the local DynamoDB (moto) did not start on port {port} "
                f"(exit {process.wait()}); its errors are above"
            )
        yield url
    finally:
        process.stdin.close()  # the child's signal to stop
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _first_line(stream: IO[str], *, timeout: float) -> str:
    # A thread, so a child that hangs before printing cannot hang the stack with it.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m local.dynamodb",
        description="moto's DynamoDB with the local stack's fidelity patches, until stdin closes",
    )
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # run by hand, in a terminal
        serve(args.port, announce=sys.stdout, until_closed=sys.stdin.buffer)


if __name__ == "__main__":
    main()
