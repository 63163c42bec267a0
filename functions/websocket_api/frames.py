"""Client and server frames of the WebSocket contract, as pure functions.

A client frame is one JSON object routed on its ``action``; a server frame is one
JSON object tagged by its ``type``. Parsing validates everything a handler needs
before it touches a table, so a rejected frame never writes anything: it becomes
one ``error`` frame whose ``code`` is machine-readable (the ``eventlog.errors``
codes where they apply).

A client frame may carry an ``id`` it chose (a string of 1 to ``REQUEST_ID_MAX_LENGTH``
characters); every reply to it (``subscribed``, ``unsubscribed``, ``published``,
``page``, ``pong`` and ``error``) echoes it. The handlers of one connection's frames run as
separate invocations in no promised order, so replies can come in any order, and
the id is what matches a reply to its request. Frames without one get replies
without one, as before ids existed.

Server frames that carry an event embed the event's stored JSON as is
(``Event.encode()`` output, or the ``event`` attribute of a stream record), so the
bytes a WebSocket client receives are the bytes every other transport sends,
and the fan-out never decodes and re-encodes an event per receiver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eventlog.config import MAX_READ_LIMIT, WEBSOCKET_MAX_MESSAGE_BYTES
from eventlog.errors import EventLogError, InvalidChannel, InvalidCursor, InvalidData
from eventlog.events import Event, encode_json, parse_cursor, validate_channel, validate_limit
from eventlog.log import ReadResult

ACTIONS = ("subscribe", "unsubscribe", "publish", "read", "ping")
"""The client actions, each an API Gateway route of the same name."""

DEFAULT_ROUTE = "$default"

REQUEST_ID_MAX_LENGTH = 64
"""The longest ``id`` a client frame may carry: room for a UUID, little to echo back."""


class FrameError(EventLogError):
    """A client frame that cannot be served; ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def bad_json(message: str) -> FrameError:
    return FrameError("bad_json", message)


def invalid_frame(message: str) -> FrameError:
    return FrameError("invalid_frame", message)


def unknown_action(action: object) -> FrameError:
    valid = ", ".join(ACTIONS)
    if action is None:
        return FrameError("unknown_action", f'a frame needs an "action"; valid actions: {valid}')
    return FrameError("unknown_action", f"unknown action {action!r:.64}; valid actions: {valid}")


# --- Client -> server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    after: int | None  # None: live only, from the current head


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class Read:
    """One page of the log after ``after``: the log's HTTP read, over the socket."""

    channel: str
    after: int
    limit: int = MAX_READ_LIMIT


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientFrame = Subscribe | Unsubscribe | Publish | Read | Ping


def decode_object(body: str | bytes | None) -> dict[str, Any]:
    """The frame as a JSON object, or ``bad_json`` / ``invalid_frame``."""
    if body is None or body == "" or body == b"":
        raise bad_json("empty frame: send one JSON object per frame")
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_json(f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        # 30 KB of "[" fits one frame and nests deeper than the decoder recurses.
        raise bad_json("frame is not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise invalid_frame(f"a frame must be a JSON object, got {type(obj).__name__}")
    return obj


def route_key(body: str | bytes | None) -> str:
    """The route API Gateway picks for ``body`` with selection ``$request.body.action``.

    For tools that play API Gateway locally: a JSON object whose ``action`` names a
    route goes there; anything else goes to ``$default``.
    """
    try:
        action = decode_object(body).get("action")
    except FrameError:
        return DEFAULT_ROUTE
    return action if isinstance(action, str) and action in ACTIONS else DEFAULT_ROUTE


def request_id(obj: dict[str, Any]) -> str | None:
    """The client's ``id`` of a decoded frame (None without one), or ``invalid_frame``."""
    value = obj.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= REQUEST_ID_MAX_LENGTH:
        raise invalid_frame(
            f'"id" must be a string of 1 to {REQUEST_ID_MAX_LENGTH} characters, got {value!r:.80}'
        )
    return value


def parse_frame(body: str | bytes | None) -> ClientFrame:
    """Validate a client frame; raise ``FrameError`` or an ``EventLogError`` if it is bad."""
    return parse_object(decode_object(body))


def parse_object(obj: dict[str, Any]) -> ClientFrame:
    """Validate a decoded client frame (its ``id`` is ``request_id``'s to read)."""
    action = obj.get("action")
    if action == "ping":
        return Ping()
    if action not in ACTIONS:
        raise unknown_action(action)
    if "channel" not in obj:
        raise InvalidChannel(f'"{action}" needs a "channel"')
    channel = validate_channel(obj["channel"])
    if action == "subscribe":
        after = obj.get("after")
        # An explicit null means the same as no cursor: live only.
        return Subscribe(channel=channel, after=None if after is None else parse_cursor(after))
    if action == "unsubscribe":
        return Unsubscribe(channel=channel)
    if action == "read":
        if obj.get("after") is None:
            raise InvalidCursor('"read" needs an "after" cursor (0 for all retained events)')
        limit = obj.get("limit", MAX_READ_LIMIT)
        return Read(channel=channel, after=parse_cursor(obj["after"]), limit=validate_limit(limit))
    if "data" not in obj:
        raise InvalidData('"publish" needs a "data" field (any JSON value, null included)')
    return Publish(channel=channel, data=obj["data"])


# --- Server -> client -------------------------------------------------------------------------


def _with_id(frame: dict[str, Any], request_id: str | None) -> str:
    return encode_json(frame if request_id is None else {**frame, "id": request_id})


def subscribed(channel: str, head: int, request_id: str | None = None) -> str:
    return _with_id({"type": "subscribed", "channel": channel, "head": head}, request_id)


def unsubscribed(channel: str, request_id: str | None = None) -> str:
    return _with_id({"type": "unsubscribed", "channel": channel}, request_id)


def event(encoded_event: str) -> str:
    """An ``event`` frame around an already encoded Event (see the module docstring)."""
    return '{"type":"event","event":' + encoded_event + "}"


def reset(channel: str, oldest: int) -> str:
    return encode_json({"type": "reset", "channel": channel, "oldest": oldest})


def published(published_event: Event, request_id: str | None = None) -> str:
    echoed = "" if request_id is None else ',"id":' + encode_json(request_id)
    return '{"type":"published"' + echoed + ',"event":' + published_event.encode() + "}"


def page(result: ReadResult, request_id: str | None = None) -> str:
    """A ``page`` frame: the HTTP read's body (``channel``, ``events``, ``next``, ``reset``,
    ``oldest``), each event as stored (see the module docstring).

    A post carries at most ``WEBSOCKET_MAX_MESSAGE_BYTES``: events that would not fit are
    left for the next read, and ``next`` is then the last seq the page holds, so nothing
    is skipped. An event is at most ``MAX_EVENT_BYTES`` (32 KB), so a page holds at least
    three.
    """
    head = '{"type":"page","channel":' + encode_json(result.channel) + ',"events":['
    # The tail at its longest: seqs stay below 10**31 (``eventlog.schema.HEAD_SEQ``).
    longest_tail = {"next": 10**31, "reset": False, "oldest": 10**31, "id": request_id}
    size = len(head.encode()) + len(encode_json(longest_tail).encode())
    kept: list[str] = []
    for item in result.events:
        encoded = item.encode()
        size += len(encoded.encode()) + 1  # and its comma
        if size > WEBSOCKET_MAX_MESSAGE_BYTES:
            if not kept:  # cannot happen with events of at most MAX_EVENT_BYTES
                raise ValueError(f"event {item.channel}/{item.seq} does not fit in a page")
            break
        kept.append(encoded)
        next_seq = item.seq  # until the last one: then the read's own next, below
    else:
        next_seq = result.next  # every event fits: past any seqs without one after them
    tail: dict[str, Any] = {"next": next_seq, "reset": result.reset, "oldest": result.oldest}
    if request_id is not None:
        tail["id"] = request_id
    return head + ",".join(kept) + "]," + encode_json(tail)[1:]


def pong(request_id: str | None = None) -> str:
    return _with_id({"type": "pong"}, request_id)


def expired() -> str:
    """The connection's token has expired: the server closes the connection after this."""
    return encode_json(
        {"type": "expired", "message": "the token has expired: reconnect with a fresh one"}
    )


def error(code: str, message: str, request_id: str | None = None) -> str:
    return _with_id({"type": "error", "code": code, "message": message}, request_id)


def error_for(exc: EventLogError, request_id: str | None = None) -> str:
    return error(exc.code, exc.message, request_id)
