"""Listening sockets and embedded uvicorn servers, shared by everything the local stack runs."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import uvicorn

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
CHILD_START_TIMEOUT_SECONDS = 30.0
CHILD_STOP_TIMEOUT_SECONDS = 5.0


class PortInUse(RuntimeError):
    """A port the local stack was asked to listen on is taken."""


def bind(host: str, port: int, *, name: str, option: str | None = None) -> socket.socket:
    """Bind a listening socket now, so a port in use is one clear error before anything starts.

    ``option`` names the command-line option that moves this server elsewhere.
    """
    # Named TCP, not left 0: asyncio switches Nagle off only on connections whose socket says
    # IPPROTO_TCP, and with Nagle on, every reply written in two parts (head, then body) on a
    # kept-alive connection waited about 40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            hint = (
                f": stop what holds it, or choose another with {option} "
                f"(make dev LOCAL_{name.upper()}_PORT=...)"
                if option
                else ""
            )
            raise PortInUse(f"port {port} ({name}) is in use on {host}{hint}") from None
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: whoever runs the event loop owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ChildDidNotStart(RuntimeError):
    """A service process ended, or said nothing, before it served."""


@contextlib.contextmanager
def child_service(module: str, port: int, *, name: str) -> Iterator[str]:
    """Run ``python -m <module> --port <port>`` (a service of the local stack); yield its URL.

    The child prints its URL on its first line of output, then serves until its
    standard input closes, which is how it stops with the stack that started it,
    whichever way that stack ends (Ctrl-C, an error, or a kill), with no signal
    handling to get right on each platform.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)])},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # Out of the terminal's process group: Ctrl-C stops the stack, and the stack stops
        # this last, after the servers that still use it on their way out.
        start_new_session=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        url = _first_line(process.stdout, timeout=CHILD_START_TIMEOUT_SECONDS)
        if "://" not in url:
            process.kill()
            raise ChildDidNotStart(
                f"the local {name} did not start on port {port} "
                f"(exit {process.wait()}); its errors are above"
            )
        yield url
    finally:
        process.stdin.close()  # the child's signal to stop
        try:
            process.wait(timeout=CHILD_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


Serve = Callable[..., None]
"""A child service's ``serve(port, *, announce, until_closed)``."""


def child_main(argv: list[str] | None, *, prog: str, description: str, serve: Serve) -> None:
    """``python -m <prog> --port N``: print the URL, serve until stdin closes."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    args = parser.parse_args(argv)
    ignore_interrupts_unless_interactive()
    with contextlib.suppress(KeyboardInterrupt):  # run by hand, in a terminal
        serve(args.port, announce=sys.stdout, until_closed=sys.stdin.buffer)


def ignore_interrupts_unless_interactive() -> None:
    """In a service the stack started, SIGINT is not the signal to stop: the stack closes
    its stdin, after the servers that still use it. (Ctrl-C never reaches it, in a session
    of its own; ``pkill -INT -f 'python -m local'`` would, and must not stop DynamoDB
    under a stack that is still shutting down.) Run by hand in a terminal, Ctrl-C works."""
    if not sys.stdin.isatty():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def wait_until_closed(stream: IO[bytes]) -> None:
    """Block until ``stream`` (a child service's stdin) reaches its end."""
    while stream.read(1024):
        pass


def _first_line(stream: IO[str], *, timeout: float) -> str:
    # A thread, so a child that hangs before printing cannot hang the stack with it.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""
