"""Pick a transport by name and build it from the endpoints file.

Every transport takes the same arguments (the endpoints, an optional token or token
provider, see ``client.auth``, and the options) and has the same interface
(``client.base.Transport``), so a test, the demo or a benchmark runs one body of
code against all three. Which transports a deployment has is what its endpoints file
says (``present_in``): each one's output key is there only if it is deployed. A
transport's module is imported when it is built, never before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, get_args

from client.auth import TokenSource
from client.base import Transport
from client.config import ClientOptions
from client.errors import MissingEndpoint
from eventlog.endpoints import POLLING_API_URL, SSE_URL, WEBSOCKET_URL, Endpoints

TransportName = Literal["polling", "sse", "websocket"]
TRANSPORTS: tuple[TransportName, ...] = get_args(TransportName)

OUTPUT_KEYS: dict[TransportName, str] = {
    "polling": POLLING_API_URL,
    "sse": SSE_URL,
    "websocket": WEBSOCKET_URL,
}
"""The endpoints file's key of each transport: there only where that transport is deployed."""


def url_of(name: TransportName, endpoints: Endpoints) -> str | None:
    return {
        "polling": endpoints.polling_api_url,
        "sse": endpoints.sse_url,
        "websocket": endpoints.websocket_url,
    }[name]


def present_in(endpoints: Endpoints) -> tuple[TransportName, ...]:
    """The transports the endpoints file offers, in ``TRANSPORTS`` order."""
    return tuple(name for name in TRANSPORTS if url_of(name, endpoints))


def _required(name: TransportName, endpoints: Endpoints) -> str:
    url = url_of(name, endpoints)
    if not url:
        offered = ", ".join(present_in(endpoints)) or "none"
        raise MissingEndpoint(
            f"the endpoints have no {OUTPUT_KEYS[name]}: {name} is not deployed there "
            f"(transports offered: {offered})"
        )
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
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}; choose one of {', '.join(TRANSPORTS)}")
    url = _required(name, endpoints)
    if name == "polling":
        from client.polling import PollingTransport

        return PollingTransport(base_url=url, token=token, options=options)
    if name == "sse":
        from client.sse import SseTransport

        return SseTransport(sse_url=url, token=token, options=options)
    from client.websocket import WebSocketTransport

    return WebSocketTransport(
        url=url, log_api_url=endpoints.log_api_url, token=token, options=options
    )


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
