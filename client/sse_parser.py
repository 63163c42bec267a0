"""A Server-Sent Events parser, as the HTML standard describes the stream format.

Fed bytes as they come off the socket, it returns each message when its blank
line arrives. It follows the standard where that matters to a resuming client:

- lines end in CRLF, LF or CR, also when a CRLF is split between two chunks, and a
  UTF-8 character may be split between chunks too;
- ``field: value`` loses one space after the colon; a line without a colon is a
  field with an empty value; ``data`` lines are joined with ``\\n``; an ``id`` with
  NUL is ignored; ``retry`` counts only if it is all digits; unknown fields are ignored;
- a line starting with ``:`` is a comment (the server's heartbeat): no message,
  only counted (``comments``);
- one leading byte order mark is dropped; an unfinished message at the end of the
  stream is discarded.

Unlike a browser's ``EventSource`` it also returns messages without ``data`` (their
``data`` is None): the SSE service's first message carries only ``retry`` and, for a
live-only stream, the ``id`` it starts from, and the client needs both.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

MAX_LINE_CHARS = 1024 * 1024
"""Longest line accepted. An event is at most 32 KiB; a stream that sends a megabyte with
no line end is not an event stream, and buffering it further would only use memory."""

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str | None = None
    """The event type; None for the default (``message``)."""
    data: str | None = None
    """The data lines joined by ``\\n``; None when the message had no ``data`` field."""
    id: str | None = None
    retry: int | None = None


class SseParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._skip_line_feed = False  # the last chunk ended in CR: a LF next belongs to it
        self._at_start = True
        self.comments = 0
        self._reset_fields()

    def _reset_fields(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._has_fields = False

    def feed(self, chunk: bytes) -> list[SseMessage]:
        """Parse the next bytes of the stream; return the messages they complete."""
        text = self._pending + self._decoder.decode(chunk)
        if self._at_start and text:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        position = 0
        if self._skip_line_feed and text:
            self._skip_line_feed = False
            if text.startswith("\n"):
                position = 1
        messages: list[SseMessage] = []
        for line_end in _LINE_END.finditer(text, position):
            message = self._line(text[position : line_end.start()])
            if message is not None:
                messages.append(message)
            position = line_end.end()
            if line_end.group() == "\r" and position == len(text):
                self._skip_line_feed = True
        self._pending = text[position:]
        if len(self._pending) > MAX_LINE_CHARS:
            raise ValueError(f"an event stream line is longer than {MAX_LINE_CHARS} characters")
        return messages

    def _line(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None
        elif name == "id":
            if "\x00" in value:
                return None
            self._id = value
        elif name == "retry":
            if not (value.isascii() and value.isdigit()):
                return None
            self._retry = int(value)
        else:
            return None
        self._has_fields = True
        return None

    def _dispatch(self) -> SseMessage | None:
        if not self._has_fields:
            return None
        message = SseMessage(
            event=self._event,
            data="\n".join(self._data) if self._data else None,
            id=self._id,
            retry=self._retry,
        )
        self._reset_fields()
        return message
