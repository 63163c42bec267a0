"""Pick a transport by name and build it from the endpoints file.

Every transport takes the same arguments (the endpoints, an optional token or token
provider, see ``client.auth``, and the options) and has the same interface
(``client.base.Transport``), so a test, the demo or a benchmark runs one body of
code against all three.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, get_args

from client.auth import TokenSource
from client.base import Transport
from client.config import ClientOptions
from client.errors import MissingEndpoint
from client.polling import PollingTransport
from client.sse import SseTransport
from client.websocket import WebSocketTransport
from eventlog.endpoints import POLLING_API_URL, SSE_URL, WEBSOCKET_URL, Endpoints

TransportName = Literal["polling", "sse", "websocket"]
TRANSPORTS: tuple[TransportName, ...] = get_args(TransportName)


def _required(url: str | None, output_key: str) -> str:
    if not url:
        raise MissingEndpoint(f"the endpoints have no {output_key}")
    return url


def create_transport(
    name: TransportName,
    endpoints: Endpoints,
    *,
    token: TokenSource = None,
    options: ClientOptions | None = None,
) -> Transport:
    """The transport ``name``, not yet connected (use it as an async context manager)."""
    options = options or ClientOptions()
    if name == "polling":
        return PollingTransport(
            base_url=_required(endpoints.polling_api_url, POLLING_API_URL),
            token=token,
            options=options,
        )
    if name == "sse":
        return SseTransport(
            sse_url=_required(endpoints.sse_url, SSE_URL),
            token=token,
            options=options,
        )
    if name == "websocket":
        return WebSocketTransport(
            url=_required(endpoints.websocket_url, WEBSOCKET_URL),
            log_api_url=endpoints.log_api_url,
            token=token,
            options=options,
        )
    raise ValueError(f"unknown transport {name!r}; choose one of {', '.join(TRANSPORTS)}")


@asynccontextmanager
async def open_transport(
    name: TransportName,
    endpoints: Endpoints,
    *,
    token: TokenSource = None,
    options: ClientOptions | None = None,
) -> AsyncIterator[Transport]:
    """Connect the transport ``name``; close it and its subscriptions on exit."""
    async with create_transport(name, endpoints, token=token, options=options) as transport:
        yield transport
