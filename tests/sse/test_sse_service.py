"""The SSE service against a real uvicorn on 127.0.0.1, its event log on in-process moto."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import Request

from eventlog import EventLog, metrics
from eventlog.config import SSE_RETRY_MILLISECONDS, Settings
from eventlog.errors import EventLogError
from eventlog.problems import PROBLEM_CONTENT_TYPE
from sse_service.app import StreamGrant, create_app, open_gate, sse_metrics
from sse_service.settings import (
    SSE_QUEUE_BYTES,
    SSE_WRITE_SLICE_BYTES,
    ServiceSettings,
)
from sse_service.stream import UNFINISHED_RESPONSE_LINE, not_a_stream_cut_on_purpose
from tests.metrics_support import assert_emf
from tests.sse_support import LiveServer, SseClient, SseMessage

Serve = Callable[..., LiveServer]

FAST: dict[str, Any] = {"reader_interval_seconds": 0.02, "drain_seconds": 0.2}
"""Test settings: a quick reader, and a drain that fits uvicorn's one-second shutdown."""


@pytest.fixture
def serve(log: EventLog) -> Iterator[Serve]:
    """Start the service (on ``log`` unless another is given) with FAST settings plus overrides."""
    servers: list[LiveServer] = []

    def start(*, event_log: EventLog | None = None, port: int = 0, **overrides: Any) -> LiveServer:
        settings = ServiceSettings(**{**FAST, **overrides})
        # No auth: these tests are about streams; tests/sse/test_sse_auth.py is about tokens.
        app = create_app(log=event_log or log, settings=settings, gate=open_gate)
        server = LiveServer(app, port=port)
        servers.append(server.__enter__())
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


def seqs(messages: list[SseMessage]) -> list[int]:
    return [int(message.id or "0") for message in messages]


def first_message(client: SseClient) -> SseMessage:
    return next(client.messages(until=time.monotonic() + 5))


def wait_for(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# --- delivery -----------------------------------------------------------------------------


def test_live_stream_starts_at_the_head_and_delivers_each_event(
    serve: Serve, log: EventLog
) -> None:
    log.publish("news", "before")
    log.publish("news", "also before")
    server = serve()
    with SseClient(server.port, "/channels/news/stream") as client:
        assert client.status == 200
        assert client.headers["content-type"].startswith("text/event-stream")
        assert client.headers["cache-control"] == "no-store"
        start = first_message(client)
        # The retry hint, and the head as the id a reconnect would resume from; no event.
        assert (start.retry, start.id, start.data) == (SSE_RETRY_MILLISECONDS, "2", None)
        published = [log.publish("news", {"n": n}) for n in range(3)]
        received = client.events(3)
    assert seqs(received) == [3, 4, 5]
    assert [message.event for message in received] == [None, None, None]  # onmessage fires
    assert [message.json() for message in received] == [event.to_dict() for event in published]


def test_after_replays_the_backlog_then_continues_live(serve: Serve, log: EventLog) -> None:
    for n in range(3):
        log.publish("news", n)
    server = serve()
    with SseClient(server.port, "/channels/news/stream?after=1") as client:
        backlog = client.events(2)
        log.publish("news", 3)
        live = client.events(1)
    assert seqs(backlog + live) == [2, 3, 4]


def test_last_event_id_wins_over_after(serve: Serve, log: EventLog) -> None:
    for n in range(5):
        log.publish("news", n)
    server = serve()
    headers = {"Last-Event-ID": "3"}
    with SseClient(server.port, "/channels/news/stream?after=0", headers=headers) as client:
        assert seqs(client.events(2)) == [4, 5]


def test_resume_by_last_event_id_loses_nothing_across_a_server_restart(
    serve: Serve, log: EventLog
) -> None:
    total = 60
    done = threading.Event()

    def publish() -> None:
        for n in range(total):
            log.publish("ticks", n)
            time.sleep(0.05)  # paced, so the restart falls while events are still published
        done.set()

    first = serve()
    port = first.port
    publisher = threading.Thread(target=publish)
    received: list[int] = []
    with SseClient(port, "/channels/ticks/stream?after=0") as client:
        publisher.start()
        received += seqs(client.events(10))
        first.stop(drain=False)  # a crash mid-stream: no drain, no clean end
        received += seqs([m for m in client.messages(until=time.monotonic() + 5) if m.data])
        assert not client.ended_cleanly
    assert not done.is_set(), "the restart should happen while events are still published"

    second = serve(port=port)  # the replacement, on the same address
    headers = {"Last-Event-ID": str(received[-1])}
    with SseClient(second.port, "/channels/ticks/stream?after=0", headers=headers) as client:
        while received[-1] < total:
            batch = client.events(1)
            assert batch, "the stream stopped before the last event"
            received += seqs(batch)
    publisher.join()
    print(f"cut after seq {received[9]}; reconnected after {headers['Last-Event-ID']}")
    assert received == list(range(1, total + 1))  # every event, once, in order


def test_a_cursor_older_than_the_retained_history_gets_reset_first(
    serve: Serve, dynamodb: Any, events_table: str
) -> None:
    now = [1_000_000.0]
    log = EventLog(
        settings=Settings(events_table_name=events_table, retention_seconds=60),
        client=dynamodb,
        clock=lambda: now[0],
    )
    for n in range(3):
        log.publish("old", n)  # expires at +60 s
    now[0] += 120
    log.publish("old", 3)
    log.publish("old", 4)
    server = serve(event_log=log)
    for path in ("/channels/old/stream?after=1", "/channels/old/stream?after=99"):
        with SseClient(server.port, path) as client:
            reset, *events = client.events(3)
        assert (reset.event, reset.json(), reset.id) == ("reset", {"oldest": 4}, "3")
        assert seqs(events) == [4, 5]


# --- keeping streams healthy ----------------------------------------------------------------


def test_a_quiet_stream_gets_a_comment_heartbeat_every_interval(serve: Serve) -> None:
    server = serve(heartbeat_seconds=0.2)
    with SseClient(server.port, "/channels/quiet/stream") as client:
        opened = time.monotonic()
        beats = [m for m in client.messages(until=opened + 1.1) if m.comments == ["heartbeat"]]
    gaps = [round(b.at - a.at, 3) for a, b in itertools.pairwise(beats)]
    print(f"heartbeats at a 0.2 s interval, gaps: {gaps}")
    assert len(beats) >= 3
    assert all(beat.data is None and beat.id is None for beat in beats)


def test_a_client_that_cannot_keep_up_is_disconnected_and_resumes(
    serve: Serve, log: EventLog, cheap_transaction_rollback: None
) -> None:
    server = serve()
    hub = server.app.state.hub
    pad = "x" * 30_000  # near the event size limit, so the stalled socket fills quickly
    fast = SseClient(server.port, "/channels/firehose/stream?after=0")
    # A small receive window that this client never reads: its stream blocks, its queue fills.
    stalled = SseClient(server.port, "/channels/firehose/stream?after=0", receive_buffer=4096)
    delivered: list[int] = []
    with fast, stalled:
        while hub.stats["closed_overflow"] == 0:
            assert len(delivered) < 1_000, "the stalled client was never disconnected"
            log.publish("firehose", {"pad": pad})
            delivered += seqs(fast.events(1))  # the fast client keeps up, one event at a time
        last = len(delivered)
        wait_for(lambda: hub.open_streams == 1)  # the stalled stream let go of its queue

        before_cut = seqs([m for m in stalled.messages(until=time.monotonic() + 5) if m.data])
        # The stream ended: cleanly if the socket took the end within a second, else cut.
        assert stalled.ended_cleanly or stalled.closed
        headers = {"Last-Event-ID": str(before_cut[-1])}
        with SseClient(server.port, "/channels/firehose/stream", headers=headers) as resumed:
            after_cut = seqs(resumed.events(last - before_cut[-1]))
    print(f"disconnected after {last} events of 30 KB; it had received {len(before_cut)}")
    assert delivered == list(range(1, last + 1))
    assert before_cut + after_cut == delivered


def test_stalled_readers_on_a_busy_channel_hold_bounded_bytes_and_are_cut(
    serve: Serve, log: EventLog, cheap_transaction_rollback: None
) -> None:
    server = serve()
    hub = server.app.state.hub
    pad = "x" * 30_000
    readers = 6
    # Small receive windows that these clients never read: every stream blocks at once.
    stalled = [
        SseClient(server.port, "/channels/busy/stream?after=0", receive_buffer=4096)
        for _ in range(readers)
    ]
    wait_for(lambda: hub.open_streams == readers)
    state = server.server.server_state
    most_buffered = 0  # the largest write buffer of any stream's socket, in the server
    published = 0
    server_errors = _Records()
    logging.getLogger("uvicorn.error").addHandler(server_errors)
    try:
        while hub.stats["closed_overflow"] < readers:
            assert published < 1_000, "the stalled readers were never disconnected"
            log.publish("busy", {"pad": pad})
            published += 1
            buffered = [c.transport.get_write_buffer_size() for c in list(state.connections)]
            most_buffered = max([most_buffered, *buffered])
        # Each cut stream's handler returns once its end has waited its second.
        wait_for(lambda: not state.tasks)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(server_errors)
        for client in stalled:
            client.close()
    wait_for(lambda: hub.open_streams == 0)
    print(
        f"{readers} stalled readers cut after {published} events of 30 KB "
        f"({published * 30 // 1024} MiB); most held {hub.stats['peak_held_bytes'] // 1024} KiB, "
        f"largest socket write buffer {most_buffered // 1024} KiB"
    )
    # Queued plus being written, per subscriber: never past the bound, however far behind.
    assert hub.stats["peak_held_bytes"] <= SSE_QUEUE_BYTES
    # What a stream hands the socket: a slice at a time, and only once the last one drained
    # below the transport's high-water mark (64 KiB).
    assert most_buffered <= 64 * 1024 + 2 * SSE_WRITE_SLICE_BYTES
    assert published * len(pad) > SSE_QUEUE_BYTES, "they were cut for lagging, not earlier"
    # Their sockets never took the end: each cut is its warning, not also a server error.
    assert [r.getMessage() for r in server_errors.records] == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_uvicorns_unfinished_response_line_stays_an_error_for_anything_else() -> None:
    """The filter drops the line only in the context of a stream it cut on purpose."""
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, f"{UNFINISHED_RESPONSE_LINE}.", None, None
    )
    assert not_a_stream_cut_on_purpose(record)


def test_streams_past_the_cap_get_503_with_retry_after(serve: Serve) -> None:
    server = serve(max_streams=2)
    hub = server.app.state.hub
    first = SseClient(server.port, "/channels/a/stream")
    with SseClient(server.port, "/channels/b/stream"):
        with SseClient(server.port, "/channels/c/stream") as refused:
            assert refused.status == 503
            assert refused.headers["retry-after"] == "2"
            assert refused.headers["content-type"] == PROBLEM_CONTENT_TYPE
            problem = refused.json()
        assert (problem["status"], problem["code"]) == (503, "too_many_streams")
        first.close()
        wait_for(lambda: hub.open_streams == 1)
        with SseClient(server.port, "/channels/c/stream") as admitted:
            assert admitted.status == 200


def test_drain_ends_open_streams_cleanly_and_refuses_new_ones(serve: Serve) -> None:
    server = serve(drain_seconds=0.4)
    hub = server.app.state.hub
    clients = [SseClient(server.port, f"/channels/c{n}/stream") for n in range(3)]
    for client in clients:
        first_message(client)
    loop = server.server.servers[0].get_loop()
    loop.call_soon_threadsafe(hub.begin_drain)
    wait_for(lambda: hub.draining)
    with SseClient(server.port, "/channels/late/stream") as late:
        assert (late.status, late.json()["code"]) == (503, "draining")
    for client in clients:
        list(client.messages(until=time.monotonic() + 2))
        assert client.ended_cleanly  # the terminating chunk: a normal end, so EventSource retries
        client.close()
    assert hub.stats["closed_drain"] == 3


def test_a_stream_ends_by_itself_within_its_lifetime_and_resumes_without_loss(
    serve: Serve, log: EventLog
) -> None:
    # What drains a task the load balancer deregisters: ECS sends no SIGTERM until the
    # deregistration delay is over, so streams must leave on their own before that.
    lifetime = 0.6
    server = serve(max_stream_seconds=lifetime)
    log.publish("life", {"n": 1})
    started = time.monotonic()
    with SseClient(server.port, "/channels/life/stream?after=0") as client:
        first = list(client.messages(until=started + 5))
        ended = time.monotonic() - started
        assert client.ended_cleanly  # a normal end: EventSource reconnects by itself
    assert lifetime / 2 <= ended < lifetime + 2
    assert [m.id for m in first if m.data and m.event is None] == ["1"]
    log.publish("life", {"n": 2})
    with SseClient(server.port, "/channels/life/stream", headers={"Last-Event-ID": "1"}) as again:
        resumed = [m for m in again.messages(until=time.monotonic() + 5) if m.data]
        assert json.loads(resumed[0].data or "{}")["seq"] == 2
    assert server.app.state.hub.stats["closed_drain"] >= 1


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/channels/" + "x" * 65 + "/stream", {}, 400, "invalid_channel"),
        ("/channels/bad%20name/stream", {}, 400, "invalid_channel"),
        ("/channels/news/stream?after=abc", {}, 400, "invalid_cursor"),
        ("/channels/news/stream?after=-1", {}, 400, "invalid_cursor"),
        ("/channels/news/stream", {"Last-Event-ID": "12x"}, 400, "invalid_cursor"),
        ("/channels/news/stream?after=1", {"Last-Event-ID": "-5"}, 400, "invalid_cursor"),
        ("/channels/a/b/stream", {}, 404, "not_found"),
    ],
)
def test_bad_input_gets_a_problem_and_no_stream(
    serve: Serve, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    server = serve()
    with SseClient(server.port, path, headers=headers) as client:
        assert client.status == status
        assert client.headers["content-type"] == PROBLEM_CONTENT_TYPE
        problem = client.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"].endswith(":" + code)
    assert problem["detail"]
    assert server.app.state.hub.open_streams == 0


# --- health, CORS, the auth seam, metrics ---------------------------------------------------


def test_healthz_and_cors_for_the_demo_page(serve: Serve) -> None:
    server = serve()
    with SseClient(server.port, "/healthz") as health:
        assert (health.status, health.json()["status"]) == (200, "ok")
    origin = {"Origin": "http://localhost:3000"}
    with SseClient(server.port, "/channels/news/stream", headers=origin) as client:
        assert client.headers["access-control-allow-origin"] == "*"
    preflight = {
        **origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id, authorization",
    }
    path = "/channels/news/stream"
    with SseClient(server.port, path, headers=preflight, method="OPTIONS") as client:
        assert client.status == 200
        assert "last-event-id" in client.headers["access-control-allow-headers"].lower()


def test_the_auth_seam_can_refuse_a_stream_or_expire_it(log: EventLog) -> None:
    class Unauthorized(EventLogError):
        code = "unauthorized"
        http_status = 401

    async def gate(request: Request, channel: str) -> StreamGrant:
        if request.headers.get("authorization") != "Bearer good":
            raise Unauthorized("a token is required")
        return StreamGrant(expires_at=time.time() + 0.3)

    app = create_app(log=log, settings=ServiceSettings(**FAST), gate=gate)
    with LiveServer(app) as server:
        with SseClient(server.port, "/channels/news/stream") as refused:
            assert (refused.status, refused.json()["code"]) == (401, "unauthorized")
        good = {"Authorization": "Bearer good"}
        with SseClient(server.port, "/channels/news/stream", headers=good) as client:
            messages = list(client.messages(until=time.monotonic() + 3))
            assert client.ended_cleanly
    assert messages[-1].event == "expired"


def test_the_open_stream_count_is_logged_as_an_embedded_metric(log: EventLog) -> None:
    hub = create_app(log=log, settings=ServiceSettings(**FAST)).state.hub
    hub.admit("news")
    values = sse_metrics(hub, slow_clients_cut=0)
    [line] = metrics.lines("RealtimeSse", values, now=1_700_000_000.5)
    record = assert_emf(line)
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == metrics.SSE_OPEN_STREAMS.namespace
    assert directive["Dimensions"] == [["Service"]]
    assert {"Name": "OpenStreams", "Unit": "Count"} in directive["Metrics"]
    assert (record["Service"], record["OpenStreams"]) == ("RealtimeSse", 1)
    assert record["_aws"]["Timestamp"] == 1_700_000_000_500


def test_the_byte_bound_must_hold_one_read_of_the_log() -> None:
    # A smaller bound would cut every client, fast ones too, on a burst of large events.
    with pytest.raises(ValueError, match="one read of the log"):
        ServiceSettings(queue_bytes=1024 * 1024)
    assert ServiceSettings().queue_bytes == SSE_QUEUE_BYTES
