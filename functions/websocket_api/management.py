"""Sending frames: the API Gateway @connections API, and its one retry policy.

Every frame the server sends, a reply or a fan-out delivery, is one
``post_to_connection`` call. Replies could instead be Lambda return values on
routes with route responses, but those are delivered after the function
returns, so a ``subscribed`` frame would arrive after the backlog that must
follow it; posting is one mechanism for everything, in the order of the calls.

Where the API lives: ``https://{domainName}/{stage}`` from the route's own event,
unless ``WEBSOCKET_MANAGEMENT_ENDPOINT`` says otherwise. The fan-out has no
WebSocket event and always takes the variable; the local stack sets it to its
own @connections server on 127.0.0.1; and a custom domain whose base path is not
the stage name needs it too.

Outcomes of a post, each handled by name:

- delivered;
- ``GoneException`` (410): the client has left (or, on AWS, the connection is
  still in ``$connect``): ``post`` returns False and the caller forgets it;
- throttled (429 ``LimitExceededException``) or a transient failure (5xx, a
  connection error): retried with full-jitter exponential backoff, then
  ``PostFailed`` (transient). A caller with a deadline may ask for a throttled post
  to be retried until the deadline instead of ``max_attempts`` times
  (``patient_when_throttled``): throttling says "slower", not "broken";
- any other refusal (403, 413 too large, 400): retrying cannot help, so
  ``PostFailed`` (permanent).

botocore's own retries are switched off on this client, so the policy above is
the only one and its attempts are counted in one place.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from websocket_api.config import (
    DEFAULT_FANOUT_WORKERS,
    MANAGEMENT_ENDPOINT_ENV,
    POST_BACKOFF_BASE_SECONDS,
    POST_BACKOFF_CAP_SECONDS,
    POST_CONNECT_TIMEOUT_SECONDS,
    POST_MAX_ATTEMPTS,
    POST_READ_TIMEOUT_SECONDS,
)

logger = logging.getLogger(__name__)

_THROTTLED = {"LimitExceededException", "TooManyRequestsException", "ThrottlingException"}
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


class PostFailed(Exception):
    """A frame could not be delivered; ``transient`` says whether a later retry may succeed."""

    def __init__(self, connection_id: str, reason: str, *, transient: bool) -> None:
        super().__init__(f"post to {connection_id} failed: {reason}")
        self.connection_id = connection_id
        self.transient = transient


def endpoint_for(request_context: Mapping[str, Any]) -> str:
    """The @connections API root for a route event's ``requestContext``."""
    override = os.environ.get(MANAGEMENT_ENDPOINT_ENV)
    if override:
        return override
    return f"https://{request_context['domainName']}/{request_context['stage']}"


def configured_endpoint() -> str:
    """The endpoint from the environment, for code that has no WebSocket event."""
    endpoint = os.environ.get(MANAGEMENT_ENDPOINT_ENV)
    if not endpoint:
        raise RuntimeError(f"{MANAGEMENT_ENDPOINT_ENV} is not set")
    return endpoint


def client_for(endpoint: str, *, max_pool_connections: int = DEFAULT_FANOUT_WORKERS) -> Any:
    """A shared, thread-safe ``apigatewaymanagementapi`` client for ``endpoint``."""
    client = _clients.get(endpoint)
    if client is None:
        with _clients_lock:
            client = _clients.get(endpoint)
            if client is None:
                client = _clients[endpoint] = new_client(
                    endpoint, max_pool_connections=max_pool_connections
                )
    return client


def new_client(endpoint: str, *, max_pool_connections: int = DEFAULT_FANOUT_WORKERS) -> Any:
    """A new client for ``endpoint``, with this module's retry policy in charge."""
    import boto3  # imported on first use: a handler that never posts never pays for it
    from botocore.config import Config

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        config=Config(
            # total: botocore reads a bare max_attempts as retries, 1 as one more try.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=POST_CONNECT_TIMEOUT_SECONDS,
            read_timeout=POST_READ_TIMEOUT_SECONDS,
            # One pooled HTTP connection per concurrent fan-out worker.
            max_pool_connections=max_pool_connections,
        ),
    )


def post(
    client: Any,
    connection_id: str,
    frame: str,
    *,
    max_attempts: int = POST_MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    out_of_time: Callable[[], bool] = lambda: False,
    patient_when_throttled: bool = False,
    on_transient: Callable[[BaseException], None] | None = None,
) -> bool:
    """Send one frame; False if the connection is gone, ``PostFailed`` if it could not be sent.

    ``out_of_time`` is asked before each retry: once it says so, the frame fails (transient).
    ``patient_when_throttled``: a throttled post is retried until then, however many tries
    that takes (only for a caller whose ``out_of_time`` does say so one day).
    ``on_transient`` hears every throttled or transient failure (the fan-out counts throttles).
    """
    data = frame.encode()
    attempt = 0
    while True:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
        except Exception as exc:
            kind = classify(exc)
            if kind == "gone":
                return False
            if kind == "permanent":
                raise PostFailed(connection_id, _describe(exc), transient=False) from exc
            if on_transient is not None:
                on_transient(exc)
            attempt += 1
            capped = not (patient_when_throttled and kind == "throttled")
            if (capped and attempt >= max_attempts) or out_of_time():
                raise PostFailed(connection_id, _describe(exc), transient=True) from exc
            ceiling = min(POST_BACKOFF_CAP_SECONDS, POST_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            delay = random.uniform(0, ceiling)  # noqa: S311
            logger.info("post to %s: %s; retrying in %.3f s", connection_id, _describe(exc), delay)
            sleep(delay)
        else:
            return True


def close(client: Any, connection_id: str) -> None:
    """Close a connection (``DELETE @connections/{id}``); one that is already gone is fine."""
    try:
        client.delete_connection(ConnectionId=connection_id)
    except Exception as exc:
        if classify(exc) != "gone":
            raise


def classify(exc: BaseException) -> str:
    """``gone``, ``throttled``, ``retry`` (transient) or ``permanent``, without botocore."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "retry"  # connection reset, timeout: nothing reached API Gateway, or no answer
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "GoneException" or status == 410:
        return "gone"
    if code in _THROTTLED or status == 429:
        return "throttled"
    if isinstance(status, int) and status >= 500:
        return "retry"
    return "permanent"


def throttled(exc: BaseException) -> bool:
    """Whether API Gateway refused ``exc``'s call for the rate (429), not for a fault."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = response.get("Error", {}).get("Code")
    return code in _THROTTLED or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 429


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}"
