"""The local stack's DynamoDB: a moto server in a process of its own.

DynamoDB is a remote service, and the local stack treats moto as one: its own
process, reached over HTTP, with the patches of ``local.moto_fidelity`` that make
it answer as DynamoDB does. Its own process because moto is the busiest part of
the stack: every publish is two requests, every SSE reader queries it four times
a second, and moto spends a few milliseconds of CPU on each. Sharing one
interpreter with the servers it answers, it held a hot channel to one core (about
55 publishes/s with 32 publishers); in a process of its own it has the other.

``python -m local.dynamodb --port N`` prints its URL on its first line of output,
then serves until its standard input closes (``local.servers.child_service``).
"""

from __future__ import annotations

import logging
from typing import IO, Any

from local.servers import HOST, child_main, wait_until_closed


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
            wait_until_closed(until_closed)
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    child_main(
        argv,
        prog="python -m local.dynamodb",
        description="moto's DynamoDB with the local stack's fidelity patches, until stdin closes",
        serve=serve,
    )


if __name__ == "__main__":
    main()
