"""The reference client's SSE transport against the real SSE service, and nothing else.

The service runs under uvicorn on 127.0.0.1 in a thread of the test process, on the
event log in the in-process moto; the client reads its streams, and publishes and
fills gaps through the same service's log API (no polling API is running).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request

from auth.claims import all_channels
from auth.tokens import issue_token
from client import ClientError, ClientOptions, Reset, open_transport
from client.auth import DevTokens
from client.sse import SseSubscription
from eventlog.endpoints import Endpoints
from eventlog.errors import EventLogError
from eventlog.log import EventLog
from local.dev_auth import DEV_TOKEN_PATH, dev_token_route
from sse_service.app import StreamGate, StreamGrant, open_gate, token_gate
from sse_service.app import create_app as create_sse_app
from sse_service.settings import ServiceSettings
from tests.auth_support import ALL_ACCESS, TEST_SECRET, verifier
from tests.client_support import RETENTION_SECONDS, Clock, eventually, live, seqs, take
from tests.sse_support import LiveServer

pytestmark = pytest.mark.anyio

FAST = {"reader_interval_seconds": 0.02, "drain_seconds": 0.2, "retry_milliseconds": 50}
"""A quick reader, a drain that fits uvicorn's one-second shutdown, and a short retry hint
(which the client honors) so reconnects are quick."""

OPTIONS = ClientOptions(wait_seconds=1)


@dataclass
class Stack:
    endpoints: Endpoints
    sse: LiveServer
    streams: list[dict[str, str | None]] = field(default_factory=list)
    """Each stream request the SSE service saw: its ``after`` and ``Last-Event-ID``."""

    def cut_streams(self) -> None:
        """End every open stream from the server side, as for a subscriber too slow to keep up."""
        hub = self.sse.app.state.hub
        loop = self.sse.server.servers[0].get_loop()
        loop.call_soon_threadsafe(
            lambda: [subscriber.close("overflow") for subscriber in list(hub.subscribers)]
        )


Serve = Callable[..., Stack]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def serve(event_log: EventLog) -> Iterator[Serve]:
    """Start the SSE service (FAST settings plus overrides)."""
    started: list[Any] = []
    servers: list[LiveServer] = []

    def start(gate: StreamGate | None = None, **overrides: Any) -> Stack:
        settings = ServiceSettings(**{**FAST, **overrides})
        streams: list[dict[str, str | None]] = []

        async def recording_gate(request: Request, channel: str) -> StreamGrant:
            streams.append(
                {
                    "after": request.query_params.get("after"),
                    "last_event_id": request.headers.get("last-event-id"),
                }
            )
            return await (gate or open_gate)(request, channel)

        # The SSE service alone: its clients publish and backfill through it too.
        context = live(create_sse_app(log=event_log, settings=settings, gate=recording_gate))
        servers.append(context.__enter__())
        started.append(context)
        sse = servers[-1]
        endpoints = Endpoints(sse_url=sse.url(""))
        return Stack(endpoints=endpoints, sse=sse, streams=streams)

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


async def test_backlog_then_live_events_in_order(serve: Serve, event_log: EventLog) -> None:
    endpoints = serve().endpoints
    before = [event_log.publish("news", n) for n in range(3)]
    async with open_transport("sse", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=1)
        assert await take(subscription, 2) == before[1:]
        published = [
            await transport.publish("news", n) for n in range(3, 6)
        ]  # through the SSE service
        assert await take(subscription, 3) == published
        assert subscription.cursor == 6
        assert subscription.stats.connections == 1
        assert subscription.stats.duplicates == 0


async def test_live_only_starts_at_the_head_from_the_preamble(
    serve: Serve, event_log: EventLog
) -> None:
    endpoints = serve().endpoints
    event_log.publish("news", "before")
    async with open_transport("sse", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        assert subscription.position == 1  # the preamble's id
        published = await transport.publish("news", "after")
        assert await take(subscription, 1) == [published]


async def test_a_dropped_stream_resumes_from_last_event_id(serve: Serve) -> None:
    stack = serve()
    async with open_transport(
        "sse", stack.endpoints, token=ALL_ACCESS, options=OPTIONS
    ) as transport:
        subscription = await transport.subscribe("news", after=0)
        first = [await transport.publish("news", n) for n in range(2)]
        assert await take(subscription, 2) == first
        await subscription.drop_connection()
        second = [await transport.publish("news", n) for n in range(2, 5)]
        assert await take(subscription, 3) == second
        assert subscription.stats.reconnects == 1
        assert subscription.stats.duplicates == 0
    assert stack.streams == [
        {"after": "0", "last_event_id": None},
        {"after": None, "last_event_id": "2"},
    ]


async def test_a_stream_the_server_cuts_is_resumed(serve: Serve) -> None:
    """The server cuts a subscriber off (as one too slow to keep up); the client resumes."""
    stack = serve()
    async with open_transport(
        "sse", stack.endpoints, token=ALL_ACCESS, options=OPTIONS
    ) as transport:
        subscription = await transport.subscribe("news")
        first = await transport.publish("news", 1)
        assert await take(subscription, 1) == [first]
        stack.cut_streams()
        await eventually(lambda: len(stack.streams) == 2, what="the reconnect")
        later = [await transport.publish("news", n) for n in range(2, 4)]
        assert await take(subscription, 2) == later
        assert subscription.stats.reconnects == 1
    # Live only at first (no cursor), then from where it got to.
    assert stack.streams[1] == {"after": None, "last_event_id": "1"}


async def test_an_expired_cursor_gets_the_reset_and_continues(
    serve: Serve, event_log: EventLog, clock: Clock
) -> None:
    endpoints = serve().endpoints
    for n in range(3):
        event_log.publish("news", n)
    clock.advance(RETENTION_SECONDS + 1)
    retained = [event_log.publish("news", n) for n in range(3, 5)]
    seen: list[Reset] = []
    async with open_transport("sse", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=0, on_reset=seen.append)
        assert await take(subscription, 2) == retained
        assert seen == [Reset(channel="news", after=0, oldest=4)]
        assert subscription.stats.resets == 1
        # A reconnect resumes after the retained events, with no second reset.
        await subscription.drop_connection()
        later = await transport.publish("news", "later")
        assert await take(subscription, 1) == [later]
        assert len(subscription.resets) == 1


async def test_a_full_server_is_waited_out_with_retry_after(serve: Serve) -> None:
    endpoints = serve(max_streams=1).endpoints
    async with open_transport("sse", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        occupant = await transport.subscribe("news")
        task = asyncio.create_task(transport.subscribe("other"))
        await eventually(
            lambda: any(
                sub.stats.refusals >= 1 for sub in transport.subscriptions if sub is not occupant
            ),
            what="a 503 for the second stream",
        )
        await occupant.close()  # frees the slot; the retry after Retry-After gets it
        subscription = await task
        assert isinstance(subscription, SseSubscription)
        assert subscription.stats.refusals >= 1
        assert subscription.stats.reconnects >= 1
        published = await transport.publish("other", "through")
        assert seqs(await take(subscription, 1)) == [published.seq]


async def test_a_refused_stream_raises_the_problem(serve: Serve) -> None:
    class Forbidden(EventLogError):
        code = "forbidden"
        http_status = 403

    async def gate(request: Request, channel: str) -> StreamGrant:
        if channel.startswith("secret"):
            raise Forbidden("this token may not subscribe to secret channels")
        return StreamGrant()

    endpoints = serve(gate=gate).endpoints
    async with open_transport("sse", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        with pytest.raises(ClientError) as refused:
            await transport.subscribe("secret.plans", after=0)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        assert "secret" in refused.value.detail
        assert not transport.subscriptions


async def test_heartbeats_are_counted(serve: Serve) -> None:
    endpoints = serve(heartbeat_seconds=0.05).endpoints
    async with open_transport("sse", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        await eventually(lambda: subscription.stats.heartbeats >= 2, what="two heartbeats")


# --- tokens that expire -------------------------------------------------------------------------


async def test_a_provider_s_fresh_token_carries_the_subscription_past_expiry(
    serve: Serve, event_log: EventLog
) -> None:
    stack = serve(gate=token_gate(verifier()))
    with live(FastAPI(routes=[dev_token_route(secret=TEST_SECRET)])) as issuer:
        tokens = DevTokens(issuer.url(DEV_TOKEN_PATH), ttl_seconds=2)
        async with open_transport("sse", stack.endpoints, token=tokens, options=OPTIONS) as sse:
            subscription = await sse.subscribe("news")
            first = event_log.publish("news", "first")
            assert await take(subscription, 1) == [first]
            await eventually(lambda: subscription.stats.expirations >= 1, what="an expiry")
            second = event_log.publish("news", "second")
            assert await take(subscription, 1) == [second]
    assert tokens.issued >= 2
    # The reconnect after the expiry resumed from the stream's position, at once.
    resumed = [s for s in stack.streams if s["last_event_id"] is not None]
    assert resumed
    assert resumed[0]["last_event_id"] == str(first.seq)


async def test_an_expired_fixed_token_ends_the_subscription_with_401(serve: Serve) -> None:
    stack = serve(gate=token_gate(verifier()))
    short = issue_token(secret=TEST_SECRET, subject="a", grants=all_channels(), ttl_seconds=2)
    async with open_transport("sse", stack.endpoints, token=short.token, options=OPTIONS) as sse:
        subscription = await sse.subscribe("news")
        with pytest.raises(ClientError) as refused:
            await take(subscription, 1)
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        assert subscription.stats.expirations == 1
