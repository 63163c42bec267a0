"""What a subscription, or a transport's own connection, cost on the wire.

Byte counts are approximate, and the same approximation for every transport so
they can be compared: HTTP counts the request line, headers and body as HTTP/1.1
would write them, and the response's status line, headers and body as received
(after content decoding); a WebSocket counts each frame's payload (not the 2-14
bytes of framing); none counts TLS or TCP overhead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TransportStats:
    requests: int = 0
    """HTTP requests (polling reads, publishes, SSE stream opens, backfill reads), or
    WebSocket frames sent (each one an API Gateway message)."""
    bytes_sent: int = 0
    bytes_received: int = 0
    connections: int = 0
    """Sessions opened: SSE streams, WebSocket connections, polling request loops."""
    reconnects: int = 0
    """Sessions opened again after a drop, a server close or a failure."""
    events: int = 0
    """Events handed to the application."""
    duplicates: int = 0
    """Deliveries dropped because their seq was already delivered."""
    backfills: int = 0
    """Reads of the log to fill a gap."""
    resets: int = 0
    """Times the history after the cursor was gone (see ``Subscription.resets``)."""
    heartbeats: int = 0
    """SSE comment lines received."""
    expirations: int = 0
    """SSE streams the server ended because their token expired (``event: expired``)."""
    not_modified: int = 0
    """Polling reads answered 304 (the ETag matched: nothing new, no body)."""
    refusals: int = 0
    """Error responses and ``error`` frames received, retried ones included."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def header_bytes(lines: Iterable[tuple[str, str]]) -> int:
    """``name: value\\r\\n`` for each header, and the blank line after them."""
    return sum(len(name) + len(value) + 4 for name, value in lines) + 2
