"""Client and server frames of the WebSocket contract, as pure functions.

A client frame is one JSON object routed on its ``action``; a server frame is one
JSON object tagged by its ``type``. Parsing validates everything a handler needs
before it touches a table, so a rejected frame never writes anything: it becomes
one ``error`` frame whose ``code`` is machine-readable (the ``eventlog.errors``
codes where they apply).

Server frames that carry an event embed the event's stored JSON as is
(``Event.encode()`` output, or the ``event`` attribute of a stream record), so the
bytes a WebSocket client receives are the bytes every other transport sends,
and the fan-out never decodes and re-encodes an event per receiver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eventlog.errors import EventLogError, InvalidChannel, InvalidData
from eventlog.events import Event, encode_json, parse_cursor, validate_channel

ACTIONS = ("subscribe", "unsubscribe", "publish", "ping")
"""The client actions, each an API Gateway route of the same name."""

DEFAULT_ROUTE = "$default"


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
class Ping:
    pass


ClientFrame = Subscribe | Unsubscribe | Publish | Ping


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


def parse_frame(body: str | bytes | None) -> ClientFrame:
    """Validate a client frame; raise ``FrameError`` or an ``EventLogError`` if it is bad."""
    obj = decode_object(body)
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
    if "data" not in obj:
        raise InvalidData('"publish" needs a "data" field (any JSON value, null included)')
    return Publish(channel=channel, data=obj["data"])


# --- Server -> client -------------------------------------------------------------------------


def subscribed(channel: str, head: int) -> str:
    return encode_json({"type": "subscribed", "channel": channel, "head": head})


def unsubscribed(channel: str) -> str:
    return encode_json({"type": "unsubscribed", "channel": channel})


def event(encoded_event: str) -> str:
    """An ``event`` frame around an already encoded Event (see the module docstring)."""
    return '{"type":"event","event":' + encoded_event + "}"


def reset(channel: str, oldest: int) -> str:
    return encode_json({"type": "reset", "channel": channel, "oldest": oldest})


def published(published_event: Event) -> str:
    return '{"type":"published","event":' + published_event.encode() + "}"


def pong() -> str:
    return encode_json({"type": "pong"})


def expired() -> str:
    """The connection's token has expired: the server closes the connection after this."""
    return encode_json(
        {"type": "expired", "message": "the token has expired: reconnect with a fresh one"}
    )


def error(code: str, message: str) -> str:
    return encode_json({"type": "error", "code": code, "message": message})


def error_for(exc: EventLogError) -> str:
    return error(exc.code, exc.message)
