"""The local stack's DynamoDB: a moto server in a process of its own.

DynamoDB is a remote service, and the local stack treats moto as one: its own
process, reached over HTTP, with the patches of ``local.moto_fidelity`` that make
it answer as DynamoDB does. Its own process because moto is the busiest part of
the stack: every publish is two requests, every SSE reader queries it four times
a second, and moto spends a few milliseconds of CPU on each. Sharing one
interpreter with the servers it answers, it held a hot channel to one core (about
55 publishes/s with 32 publishers); in a process of its own it has the other.

moto's WSGI app is served by waitress rather than moto's own werkzeug server, for
keep-alive: DynamoDB's endpoints keep connections open and botocore pools them, but
werkzeug's development server closes every connection after one response (it sends
``Connection: close`` whatever the protocol version). A new connection per request
cost the client a TCP handshake and the server a new thread: against a quiet server a
publish (two requests) took 13.2 ms at the median that way, 11.9 ms with keep-alive.

``python -m local.dynamodb --port N`` prints its URL on its first line of output,
then serves until its standard input closes (``local.servers.child_service``).
"""

from __future__ import annotations

import logging
import threading
from typing import IO, Any

from local.servers import HOST, child_main, wait_until_closed

SERVER_THREADS = 8
"""Threads that run moto's app. moto answers one request at a time anyway
(``moto_fidelity.atomic_requests``), so most of them wait on its lock; the server's
main thread reads and parses the next requests meanwhile."""

MAX_CONNECTIONS = 1000
"""Open connections the server keeps (waitress's default is 100). Every botocore client
of every local process pools up to ten, and past the limit the server stops accepting."""


def serve(port: int, *, announce: IO[str], until_closed: IO[bytes]) -> None:
    """Serve moto on ``port`` (0: any free one) until ``until_closed`` reaches its end."""
    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from local.moto_fidelity import dynamodb_fidelity

    # waitress warns whenever requests queue for its threads. Under load here they do, all
    # held by moto answering one request at a time: that is no fault to warn about.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    with dynamodb_fidelity():
        server: Any = waitress.create_server(
            DomainDispatcherApplication(create_backend_app),
            host=HOST,
            port=port,
            threads=SERVER_THREADS,
            connection_limit=MAX_CONNECTIONS,
            ident="moto",
        )
        # A daemon thread: the process ends when its stdin closes, with whatever connections
        # its clients still hold open.
        threading.Thread(target=server.run, name="moto", daemon=True).start()
        print(f"http://{HOST}:{server.effective_port}", file=announce, flush=True)
        wait_until_closed(until_closed)


def main(argv: list[str] | None = None) -> None:
    child_main(
        argv,
        prog="python -m local.dynamodb",
        description="moto's DynamoDB with the local stack's fidelity patches, until stdin closes",
        serve=serve,
    )


if __name__ == "__main__":
    main()
