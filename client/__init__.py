"""The reference client: one interface over polling, SSE and WebSocket.

::

    from client import open_transport
    from eventlog.endpoints import Endpoints

    async with open_transport("websocket", Endpoints.load()) as transport:
        subscription = await transport.subscribe("news", after=0)
        await transport.publish("news", {"hello": "world"})
        async for event in subscription:  # each event once, in seq order, across reconnects
            print(event.seq, event.data)

- ``base``: the interface (``Transport``, ``Subscription``) and the pump every
  subscription runs; ``sequencer``: exactly-once delivery, the one place it lives;
- ``polling``, ``sse``, ``websocket``: the transports; ``sse_parser``: the event-stream
  parser; ``transports``: ``open_transport`` by name;
- ``auth``: tokens, fixed or from a provider asked before each connection (``DevTokens``
  for the local stack);
- ``config`` (``ClientOptions``), ``errors`` (``ClientError``), ``stats`` (``TransportStats``);
- ``python -m client``: a command line to publish and subscribe (``client.cli``).
"""

import client._paths  # noqa: F401  (first: makes ``eventlog`` importable from a checkout)
from client.base import Subscription, Transport
from client.config import ClientOptions
from client.errors import ClientError, MissingEndpoint
from client.sequencer import Reset, Sequencer
from client.stats import TransportStats
from client.transports import TRANSPORTS, TransportName, create_transport, open_transport

__all__ = [
    "TRANSPORTS",
    "ClientError",
    "ClientOptions",
    "MissingEndpoint",
    "Reset",
    "Sequencer",
    "Subscription",
    "Transport",
    "TransportName",
    "TransportStats",
    "create_transport",
    "open_transport",
]
