"""A real uvicorn for the SSE tests, and a raw-socket SSE client that sees every byte.

An in-memory ASGI transport buffers a whole response, so an endless stream would
hang in it; these tests talk to uvicorn on 127.0.0.1 instead, run in a thread of
the test process so that in-process moto serves its event log. The client is a
plain socket so a test can stall it, shrink its receive buffer, time its
heartbeats and tell a cleanly ended stream (the terminating chunk) from a cut one.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI


class LiveServer:
    """uvicorn (uvloop + httptools, as in the container) in a background thread."""

    def __init__(self, app: FastAPI, *, port: int = 0, graceful_seconds: int = 1) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful_seconds,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, *, drain: bool = True) -> None:
        """Stop as on SIGTERM (drain the streams first), or, with ``drain=False``, cut them."""
        if drain and self.server.started and self.server.servers:
            loop = self.server.servers[0].get_loop()
            loop.call_soon_threadsafe(self.app.state.hub.begin_drain)
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class SseMessage:
    """One SSE message (fields up to a blank line), with its arrival time."""

    at: float
    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class SseClient:
    """An HTTP/1.1 request over a plain socket; ``messages()`` parses the SSE body as it arrives."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        receive_buffer: int | None = None,
        timeout: float = 5.0,
        method: str = "GET",
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Before connect, so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(("127.0.0.1", port))
        except OSError:
            self.sock.close()
            raise
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Accept: text/event-stream",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._raw = b""
        self._body = b""
        self.ended_cleanly = False  # the terminating chunk arrived
        self.closed = False  # the server closed the connection
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in header_lines if line)
        }

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _recv(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self._raw += chunk
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._raw:
            if not self._recv():
                raise ConnectionError(f"connection closed before {marker!r}")
        head, self._raw = self._raw.split(marker, 1)
        return head

    def read_body(self) -> bytes:
        """The whole body of a non-streaming response (Content-Length)."""
        length = int(self.headers.get("content-length", "0"))
        while len(self._raw) < length and self._recv():
            pass
        return self._raw[:length]

    def json(self) -> Any:
        return json.loads(self.read_body())

    def _dechunk(self) -> bool:
        """Move complete chunks from the raw buffer to the body; False once the stream ended."""
        while True:
            if b"\r\n" not in self._raw:
                return True
            size_line, rest = self._raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.ended_cleanly = True
                return False
            if len(rest) < size + 2:
                return True
            self._body += rest[:size]
            self._raw = rest[size + 2 :]

    def messages(self, *, until: float | None = None) -> Iterator[SseMessage]:
        """Messages as they arrive, until the stream ends or ``until`` (monotonic) passes."""
        while True:
            while b"\n\n" in self._body:
                block, self._body = self._body.split(b"\n\n", 1)
                yield _parse(block.decode(), at=time.monotonic())
            if not self._dechunk() and b"\n\n" not in self._body:
                return
            if b"\n\n" in self._body:
                continue
            if until is not None:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return
                self.sock.settimeout(remaining)
            try:
                if not self._recv():
                    return
            except TimeoutError:
                return

    def events(self, count: int, *, timeout: float = 5.0) -> list[SseMessage]:
        """The next ``count`` data messages (heartbeats and the preamble skipped)."""
        got: list[SseMessage] = []
        for message in self.messages(until=time.monotonic() + timeout):
            if message.data is not None:
                got.append(message)
                if len(got) == count:
                    break
        return got


def _parse(block: str, *, at: float) -> SseMessage:
    message = SseMessage(at=at)
    for line in block.split("\n"):
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            message.comments.append(value)
        elif name == "id":
            message.id = value
        elif name == "event":
            message.event = value
        elif name == "data":
            message.data = value if message.data is None else message.data + "\n" + value
        elif name == "retry":
            message.retry = int(value)
    return message
