"""The client's event-stream parser, fed bytes as a socket would deliver them."""

from __future__ import annotations

import json

import pytest

from client.sse_parser import MAX_LINE_CHARS, SseMessage, SseParser
from eventlog.events import Event
from sse_service.hub import EXPIRED_FRAME, event_frame, preamble, reset_frame


def parse(*chunks: bytes) -> tuple[list[SseMessage], int]:
    parser = SseParser()
    messages: list[SseMessage] = []
    for chunk in chunks:
        messages += parser.feed(chunk)
    return messages, parser.comments


def bytewise(stream: bytes) -> list[SseMessage]:
    return parse(*(stream[i : i + 1] for i in range(len(stream))))[0]


def test_an_event_with_id_and_data() -> None:
    messages, _ = parse(b"id: 7\ndata: hello\n\n")
    assert messages == [SseMessage(id="7", data="hello")]


def test_data_lines_are_joined_with_newlines() -> None:
    messages, _ = parse(b"data: one\ndata: two\ndata\n\n")
    assert messages == [SseMessage(data="one\ntwo\n")]


def test_comments_are_counted_and_are_not_messages() -> None:
    messages, comments = parse(b": heartbeat\n\n:\n\ndata: x\n: inside\n\n")
    assert messages == [SseMessage(data="x")]
    assert comments == 3


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_the_standard_allows(line_end: bytes) -> None:
    stream = line_end.join([b"event: reset", b"data: {}", b"", b"data: 2", b"", b""])
    assert parse(stream)[0] == [SseMessage(event="reset", data="{}"), SseMessage(data="2")]


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    messages, _ = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert messages == [SseMessage(data="a\nb")]


def test_a_cr_at_the_end_of_a_chunk_followed_by_text_ends_the_line() -> None:
    messages, _ = parse(b"data: a\r", b"data: b\r\r")
    assert messages == [SseMessage(data="a\nb")]


def test_a_character_split_between_chunks() -> None:
    encoded = "data: Grüße, 世界\n\n".encode()
    split = encoded.index("世".encode()) + 1  # inside the three bytes of one character
    assert parse(encoded[:split], encoded[split:])[0] == [SseMessage(data="Grüße, 世界")]


def test_one_leading_byte_order_mark_is_dropped() -> None:
    messages, _ = parse(b"\xef\xbb", b"\xbfdata: x\n\ndata: \xef\xbb\xbfy\n\n")
    assert messages == [SseMessage(data="x"), SseMessage(data="\ufeffy")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    messages, _ = parse(b"data:x\n\ndata:  x\n\n")
    assert messages == [SseMessage(data="x"), SseMessage(data=" x")]


def test_a_line_without_colon_is_a_field_with_an_empty_value() -> None:
    messages, _ = parse(b"data\n\n")
    assert messages == [SseMessage(data="")]


def test_invalid_id_and_retry_and_unknown_fields_are_ignored() -> None:
    messages, _ = parse(b"id: a\x00b\nretry: 1s\nfoo: bar\n\nfoo: only\n\nid: 3\nretry: 250\n\n")
    assert messages == [SseMessage(id="3", retry=250)]


def test_an_empty_event_type_is_the_default_type() -> None:
    assert parse(b"event:\ndata: x\n\n")[0] == [SseMessage(data="x")]


def test_a_message_without_data_is_returned_for_its_id_and_retry() -> None:
    assert parse(b"retry: 2000\nid: 41\n\n")[0] == [SseMessage(id="41", retry=2000)]


def test_an_unfinished_message_at_the_end_is_not_returned() -> None:
    assert parse(b"data: complete\n\ndata: cut off\n")[0] == [SseMessage(data="complete")]


def test_feeding_byte_by_byte_gives_the_same_messages() -> None:
    stream = (
        b'\xef\xbb\xbfretry: 10\r\n\r\n: hb\r\nid: 1\r\ndata: {"a": "\xc3\xa9"}\r\n\r\n'
        b"event: reset\rdata: {}\r\r"
    )
    assert bytewise(stream) == parse(stream)[0]
    assert len(parse(stream)[0]) == 3


def test_a_line_without_end_beyond_the_limit_is_refused() -> None:
    parser = SseParser()
    parser.feed(b"data: " + b"x" * (MAX_LINE_CHARS - 10))
    with pytest.raises(ValueError, match="longer than"):
        parser.feed(b"x" * 20)


def test_the_sse_service_frames_parse_to_what_they_mean() -> None:
    """The bytes the SSE service writes (sse_service.hub), read by this parser."""
    event = Event(channel="news", seq=17, data={"text": "a\nb"}, time="2026-11-28T08:47:00.123Z")
    stream = (
        preamble(retry_milliseconds=2000, cursor=16)
        + reset_frame(5)
        + event_frame(event)
        + b": heartbeat\n\n"
        + EXPIRED_FRAME
    )
    messages, comments = parse(stream)
    assert messages[0] == SseMessage(id="16", retry=2000)
    assert messages[1] == SseMessage(event="reset", data='{"oldest":5}', id="4")
    assert (messages[2].id, messages[2].event) == ("17", None)
    assert messages[2].data is not None
    assert Event.decode(messages[2].data) == event  # one data line, newline escaped
    assert messages[3].event == "expired"
    assert json.loads(messages[3].data or "") == {}
    assert comments == 1
    assert bytewise(stream) == messages
