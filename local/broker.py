"""The local stack's broker for the SSE service: a Redis protocol server in a process of its own.

Deployed, the SSE tasks subscribe to ElastiCache Serverless for Valkey
(``sse_service.broker``). Locally the same client talks to fakeredis's TCP server,
a Python implementation of the Redis protocol with pub/sub, so ``make dev`` needs
nothing installed beyond the project's packages. Its own process, as a broker is a
service of its own: stopping it (a test kills it mid-stream) cuts every
subscriber's connection, as a broker that fails over does.

``python -m local.broker --port N`` prints its URL on its first line of output,
then serves until its standard input closes (``local.servers.child_service``).
``make dev BROKER_URL=redis://...`` (or ``--broker-url``) uses a real Redis or
Valkey server instead.
"""

from __future__ import annotations

import threading
from typing import IO

from local.servers import HOST, child_main, wait_until_closed


def serve(port: int, *, announce: IO[str], until_closed: IO[bytes]) -> None:
    """Serve the Redis protocol on ``port`` (0: any free one) until ``until_closed`` ends."""
    from fakeredis import TcpFakeServer

    server = TcpFakeServer((HOST, port), server_type="valkey")
    server.daemon_threads = True  # a subscriber's connection must not keep the process alive
    thread = threading.Thread(target=server.serve_forever, name="broker", daemon=True)
    thread.start()
    try:
        host, bound = server.server_address[:2]
        print(f"redis://{host!s}:{bound}", file=announce, flush=True)
        wait_until_closed(until_closed)
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    child_main(
        argv,
        prog="python -m local.broker",
        description="a Redis protocol server (fakeredis) for the SSE service, until stdin closes",
        serve=serve,
    )


if __name__ == "__main__":
    main()
