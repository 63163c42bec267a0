"""Serve the SSE service as the container does: ``python -m sse_service``.

uvicorn with uvloop and httptools (the fastest event loop and HTTP parser it
has; one process holds thousands of mostly idle sockets). The timeouts are
derived from the shared knobs, so they cannot drift from the infrastructure:

- keep-alive longer than the load balancer's idle timeout, so uvicorn never
  closes an idle connection the load balancer is about to reuse (a 502);
- graceful shutdown one second longer than the drain window, so the drain, not
  uvicorn, decides when streams end.

Logs are JSON lines on standard output (``eventlog.structured_logs``), uvicorn's
too, and so are the metrics (``eventlog.metrics``): the awslogs driver sends both
to the service's log group, where CloudWatch turns the metric lines into metrics.
"""

from __future__ import annotations

import logging.config
import math
import os
from typing import Any

import uvicorn

from eventlog import metrics, structured_logs
from eventlog.config import ALB_IDLE_TIMEOUT_SECONDS
from sse_service.settings import listen_port

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": structured_logs.JsonFormatter}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["stdout"], "level": os.environ.get("LOG_LEVEL", "INFO").upper()},
}


def main() -> None:
    # Logging first: building the app may warn (AUTH IS OFF), and must say so in this format.
    structured_logs.install()
    logging.config.dictConfig(LOG_CONFIG)
    metrics.use_sink(metrics.stdout_sink)
    from sse_service.app import app

    settings = app.state.settings
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104 (a container listens on its interface)
        port=listen_port(),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_keep_alive=ALB_IDLE_TIMEOUT_SECONDS + 5,
        timeout_graceful_shutdown=math.ceil(settings.drain_seconds) + 1,
        backlog=4096,  # a whole task's clients may reconnect at once after a deploy
        # Off: tokens travel in query strings (browsers cannot set EventSource headers).
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips="*",  # only the load balancer can reach the task
        log_config=LOG_CONFIG,
    )


if __name__ == "__main__":
    main()
