"""Listening sockets and embedded uvicorn servers, shared by everything the local stack runs."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import uvicorn


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
