"""The route handlers: one Lambda entry point per API Gateway WebSocket route.

``connect``, ``disconnect``, ``subscribe``, ``unsubscribe``, ``publish``, ``read``,
``ping`` and ``default`` are the routes ``$connect``, ``$disconnect``, the five
actions and ``$default``; ``ROUTES`` maps route keys to them for anything that
plays API Gateway locally.

Why one function per route rather than one function that dispatches on
``routeKey``: each route gets exactly the permissions it uses (``ping`` cannot
write a table, only ``publish`` can append to the log, ``read`` only reads it), its own
metrics and its own concurrency. The cost is cold starts: a connection's first ``subscribe``
may start a fresh environment although ``$connect`` just ran in a warm one.
The handlers import no SDK at load time (boto3 comes on first use) to keep
that cost small; ``bench/websocket_fanout.py`` measures it.

Each handler is thin: parse the frame (``frames``), do one thing with the log or
the connections table, reply by ``post_to_connection`` (see ``management`` for
why replies are posted), echoing the frame's ``id`` if it had one: a connection's
frames are separate invocations, so its replies come in no promised order. Bad
input of any kind, also a publish the log refuses, becomes one ``error`` frame and
a 200: the connection stays open and nothing is written; so does a request
DynamoDB throttles (``throttled``: retry later). Anything else is a server fault:
the client gets an ``internal_error`` frame and the exception propagates, so the
function's error metric counts it.

Subscribing is ordered so that no event can fall between backlog and live:

1. record the subscription (strongly consistent, read by every later fan-out);
2. read the channel's head H;
3. send ``subscribed`` with H, then, given a cursor, ``reset`` if the log says
   so and every event after the cursor up to at least H, in pages of 100 (waiting
   briefly for a seq up to H that its publisher is still writing).

An event above H was published after step 2, so after step 1, so its fan-out
finds the subscription and delivers it live. Events up to H come in the
backlog. Some may come both ways; the client drops duplicates by ``seq``. A
live event can even overtake ``subscribed`` (the fan-out does not wait for this
handler), so a client accepts events of a channel from the moment it asks.

Auth: the REQUEST authorizer on ``$connect`` (``websocket_api.authorizer``) verifies
the token and returns its claims; API Gateway passes them to every later route as
``requestContext.authorizer`` (kept in ``Request.authorizer``). ``authorize``
checks each ``subscribe`` and ``publish`` against them: an ``error`` frame
``forbidden`` for a channel or scope the token does not grant, ``unauthorized``
once the token has expired. A subscription records its token's ``exp``; from then
on the fan-out delivers nothing to it, sends ``expired`` and closes the connection
(the client reconnects with a fresh token and resumes from its cursor). A connection that
reached a handler without claims, when auth is on, is refused as ``unauthorized``:
a misconfigured API fails closed. ``unsubscribe`` and ``ping`` need no scope.
Events are never logged: the ``$connect`` event carries the token in its query string.
Each request gets one log line of fields instead (``eventlog.structured_logs``): route,
outcome, API Gateway's request id, connection id, channel and seq.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auth.claims import Claims, Scope
from auth.config import OFF_WARNING, mode_from_env
from eventlog.config import MAX_READ_LIMIT
from eventlog.errors import EventLogError, Throttled, is_throttling
from eventlog.log import EventLog, default_log
from eventlog.structured_logs import fields, install
from websocket_api import frames, management
from websocket_api.config import (
    BACKLOG_STALL_FIRST_PAUSE_SECONDS,
    BACKLOG_STALL_PAUSES,
    connections_table_name,
)
from websocket_api.connections import Connections
from websocket_api.frames import ClientFrame, Ping, Publish, Read, Subscribe, Unsubscribe

logger = logging.getLogger(__name__)

Response = dict[str, Any]
OK: Response = {"statusCode": 200}


@dataclass(frozen=True, kw_only=True)
class Request:
    """What a handler needs from an API Gateway WebSocket event."""

    connection_id: str
    route_key: str
    body: str | None
    connected_at_ms: int
    endpoint: str
    authorizer: Mapping[str, Any] | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        context = event["requestContext"]
        connected_at = context.get("connectedAt") or context.get("requestTimeEpoch")
        return cls(
            connection_id=context["connectionId"],
            route_key=context["routeKey"],
            body=event.get("body"),
            connected_at_ms=int(connected_at) if connected_at else int(time.time() * 1000),
            endpoint=management.endpoint_for(context),
            authorizer=context.get("authorizer"),
        )


@dataclass(frozen=True, kw_only=True)
class Services:
    """The handlers' collaborators, built from the environment on first use."""

    log: EventLog
    connections: Connections
    management_client: Callable[[str], Any] = management.client_for
    claims_required: bool = True
    """False only with ``AUTH_MODE=off``: actions then need no authorizer context."""

    @classmethod
    def from_env(cls) -> Services:
        log = default_log()
        # One DynamoDB client for both tables: a second would cost another init.
        connections = Connections(table_name=connections_table_name(), client=_LazyClient(log))
        claims_required = mode_from_env() != "off"
        if not claims_required:
            logger.warning(OFF_WARNING)
        return cls(log=log, connections=connections, claims_required=claims_required)


class _LazyClient:
    """The log's DynamoDB client, created when first used rather than at import."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log.client, name)


_services: Services | None = None


def services() -> Services:
    global _services
    if _services is None:
        _services = Services.from_env()
    return _services


def use_services(replacement: Services | None) -> None:
    """Swap the collaborators (tests, the local stack); None goes back to the environment."""
    global _services
    _services = replacement


class Sender:
    """Posts frames to the caller's connection; remembers whether the caller has left."""

    def __init__(self, request: Request) -> None:
        self.connection_id = request.connection_id
        self._client = services().management_client(request.endpoint)
        self.gone = False

    def send(self, frame: str) -> bool:
        if not self.gone and not management.post(self._client, self.connection_id, frame):
            self.gone = True
        return not self.gone


# --- $connect / $disconnect -----------------------------------------------------------------


def connect(event: Mapping[str, Any], context: Any = None) -> Response:
    """Record the connection. No frame: posting during ``$connect`` answers 410 on AWS."""
    request = Request.from_event(event)
    services().connections.connect(request.connection_id, connected_at_ms=request.connected_at_ms)
    _log_request(event, request, outcome="ok")
    return OK


def disconnect(event: Mapping[str, Any], context: Any = None) -> Response:
    """Forget the connection and its subscriptions (best effort: TTL catches the rest)."""
    request = Request.from_event(event)
    services().connections.forget(request.connection_id)
    _log_request(event, request, outcome="ok")
    return OK


# --- Actions ----------------------------------------------------------------------------------


def subscribe(event: Mapping[str, Any], context: Any = None) -> Response:
    return _serve(event, Subscribe)


def unsubscribe(event: Mapping[str, Any], context: Any = None) -> Response:
    return _serve(event, Unsubscribe)


def publish(event: Mapping[str, Any], context: Any = None) -> Response:
    return _serve(event, Publish)


def read(event: Mapping[str, Any], context: Any = None) -> Response:
    return _serve(event, Read)


def ping(event: Mapping[str, Any], context: Any = None) -> Response:
    return _serve(event, Ping)


def default(event: Mapping[str, Any], context: Any = None) -> Response:
    """Anything API Gateway could not route: not JSON, or no known ``action``."""
    return _serve(event, None)


def authorize(request: Request, *, scope: Scope, channel: str) -> Claims | None:
    """Check the connection's claims for ``scope`` on ``channel``; raise if not granted.

    The claims, or None when auth is off.
    """
    if not services().claims_required:
        return None
    claims = Claims.from_context(request.authorizer)
    claims.check(channel=channel, scope=scope, now=time.time())
    return claims


def _serve(event: Mapping[str, Any], expected: type[ClientFrame] | None) -> Response:
    request = Request.from_event(event)
    sender = Sender(request)
    request_id: str | None = None  # echoed in every reply once it is known to be valid
    frame: ClientFrame | None = None
    outcome, seq = "internal_error", None
    try:
        obj = frames.decode_object(request.body)
        request_id = frames.request_id(obj)
        frame = frames.parse_object(obj)
        if expected is None or not isinstance(frame, expected):
            # Only a router that disagrees with API Gateway's selection gets here.
            raise frames.unknown_action(f"{type(frame).__name__.lower()} on {request.route_key}")
        seq = _dispatch(request, frame, sender, request_id)
        outcome = "ok"
    except EventLogError as exc:
        outcome = exc.code
        sender.send(frames.error_for(exc, request_id))
    except Exception as exc:
        if is_throttling(exc):
            # The client's to retry, as over HTTP: nothing was written.
            outcome = "throttled"
            throttled = Throttled("the event log is over capacity; retry shortly")
            sender.send(frames.error_for(throttled, request_id))
            return OK
        logger.exception("%s failed for %s", request.route_key, request.connection_id)
        with contextlib.suppress(Exception):  # the original failure is the one to report
            sender.send(frames.error("internal_error", "the server failed; try again", request_id))
        raise
    finally:
        _log_request(event, request, outcome=outcome, frame=frame, seq=seq)
    return OK


def _dispatch(
    request: Request, frame: ClientFrame, sender: Sender, request_id: str | None
) -> int | None:
    """Serve one action; the seq it concerns (a subscription's head, a published event's)."""
    log = services().log
    connections = services().connections
    match frame:
        case Subscribe(channel=channel, after=after):
            claims = authorize(request, scope="subscribe", channel=channel)
            connections.subscribe(
                request.connection_id,
                channel,
                connected_at_ms=request.connected_at_ms,
                token_expires_at=None if claims is None else claims.expires_at,
            )
            head = log.head(channel)
            if sender.send(frames.subscribed(channel, head, request_id)) and after is not None:
                send_backlog(log, sender, channel=channel, after=after, head=head)
            return head
        case Unsubscribe(channel=channel):
            connections.unsubscribe(request.connection_id, channel)
            sender.send(frames.unsubscribed(channel, request_id))
        case Read(channel=channel, after=after, limit=limit):
            authorize(request, scope="subscribe", channel=channel)
            result = log.read(channel, after, limit)
            sender.send(frames.page(result, request_id))
            return result.next
        case Publish(channel=channel, data=data):
            authorize(request, scope="publish", channel=channel)
            published = log.publish(channel, data)
            sender.send(frames.published(published, request_id))
            return published.seq
        case Ping():
            sender.send(frames.pong(request_id))
    return None


def _log_request(
    event: Mapping[str, Any],
    request: Request,
    *,
    outcome: str,
    frame: ClientFrame | None = None,
    seq: int | None = None,
) -> None:
    # One line per request, with what an operator searches by; never the event (the
    # $connect event holds the token), never a frame's data.
    logger.info(
        "%s %s",
        request.route_key,
        outcome,
        extra=fields(
            transport="websocket",
            outcome=outcome,
            request_id=event["requestContext"].get("requestId"),
            channel=getattr(frame, "channel", None),
            seq=seq,
            connection_id=request.connection_id,
        ),
    )


def send_backlog(
    log: EventLog,
    sender: Sender,
    *,
    channel: str,
    after: int,
    head: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Send every event after ``after`` up to at least ``head``, with ``reset`` first if due.

    A read stops before a seq that is still being written (``eventlog.log``); the
    backlog reads again after a short pause, a few times. A seq whose publisher died
    takes longer to settle than a subscribe should wait: the client's sequencer
    backfills what follows it when the next live event arrives.
    """
    cursor, stalls = after, 0
    while True:
        page = log.read(channel, cursor, MAX_READ_LIMIT)
        reset = page.oldest if page.reset else None
        if reset is not None and not sender.send(frames.reset(channel, reset)):
            return
        for event in page.events:
            if not sender.send(frames.event(event.encode())):
                return
        if page.head is not None or page.next >= head:
            return
        if page.next == cursor and not page.events:
            if stalls == BACKLOG_STALL_PAUSES:
                return
            sleep(BACKLOG_STALL_FIRST_PAUSE_SECONDS * 2**stalls)
            stalls += 1
        cursor = page.next


install()  # tokens never reach a log line (eventlog.structured_logs)

ROUTES: dict[str, Callable[[Mapping[str, Any], Any], Response]] = {
    "$connect": connect,
    "$disconnect": disconnect,
    "$default": default,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "publish": publish,
    "read": read,
    "ping": ping,
}
"""Route key -> handler, for anything that plays API Gateway (see ``frames.route_key``)."""
