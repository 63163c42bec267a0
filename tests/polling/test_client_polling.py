"""The reference client's polling transport against the real polling app.

The app (``polling.app``) runs under uvicorn on 127.0.0.1, in a thread of the test
process, so its event log is the in-process moto of the ``dynamodb`` fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from client import ClientError, ClientOptions, Reset, open_transport
from eventlog.config import MAX_EVENT_BYTES
from eventlog.endpoints import Endpoints
from eventlog.log import EventLog
from polling.app import create_app
from tests.auth_support import ALL_ACCESS
from tests.client_support import RETENTION_SECONDS, Clock, eventually, live, seqs, take

pytestmark = pytest.mark.anyio

OPTIONS = ClientOptions(wait_seconds=1)
"""Short long polls, so a closing subscription's request ends quickly."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def endpoints(event_log: EventLog) -> Iterator[Endpoints]:
    with live(create_app(log=event_log)) as server:
        yield Endpoints(polling_api_url=server.url("/"))


async def test_publish_then_read_everything_retained_in_order(endpoints: Endpoints) -> None:
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        published = [await transport.publish("news", {"n": n}) for n in range(3)]
        assert seqs(published) == [1, 2, 3]
        assert published[0].data == {"n": 0}
        subscription = await transport.subscribe("news", after=0)
        assert await take(subscription, 3) == published
        assert subscription.cursor == 3
        later = await transport.publish("news", "later")
        assert await take(subscription, 1) == [later]
        assert subscription.stats.requests >= 2
        assert subscription.stats.bytes_received > 0
        assert transport.stats.requests == 4  # the publishes


async def test_live_only_starts_at_the_head(endpoints: Endpoints, event_log: EventLog) -> None:
    event_log.publish("news", "before")
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news")
        assert subscription.position == 1  # confirmed at the head before subscribe() returned
        published = [await transport.publish("news", n) for n in range(2)]
        assert await take(subscription, 2) == published


async def test_a_dropped_connection_resumes_without_loss_or_repeat(endpoints: Endpoints) -> None:
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=0)
        first = [await transport.publish("news", n) for n in range(2)]
        assert await take(subscription, 2) == first
        await subscription.drop_connection()
        second = [await transport.publish("news", n) for n in range(2, 5)]
        assert await take(subscription, 3) == second
        assert subscription.stats.reconnects == 1
        assert subscription.stats.duplicates == 0


async def test_publishers_racing_are_read_once_each_in_order(endpoints: Endpoints) -> None:
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=0)
        published = await asyncio.gather(*(transport.publish("news", n) for n in range(12)))
        assert sorted(seqs(list(published))) == list(range(1, 13))
        received = await take(subscription, 12)
        assert seqs(received) == list(range(1, 13))
        assert {event.data for event in received} == set(range(12))


async def test_an_expired_cursor_is_reset_to_the_oldest_retained(
    endpoints: Endpoints, event_log: EventLog, clock: Clock
) -> None:
    for n in range(3):
        event_log.publish("news", n)
    clock.advance(RETENTION_SECONDS + 1)
    retained = [event_log.publish("news", n) for n in range(3, 5)]
    seen: list[Reset] = []
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("news", after=1, on_reset=seen.append)
        assert await take(subscription, 2) == retained
    assert seen == subscription.resets == [Reset(channel="news", after=1, oldest=4)]
    assert seen[0].lost == range(2, 4)
    assert subscription.stats.resets == 1


async def test_an_unchanged_empty_read_is_a_304(endpoints: Endpoints) -> None:
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        subscription = await transport.subscribe("quiet")
        # The first read (no wait) and the next (1 s long poll) find the same nothing.
        await eventually(lambda: subscription.stats.not_modified >= 1, what="a 304")
        event = await transport.publish("quiet", "finally")
        assert await take(subscription, 1) == [event]


async def test_refusals_are_problems_with_their_code(endpoints: Endpoints) -> None:
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        with pytest.raises(ClientError) as too_large:
            await transport.publish("news", "x" * MAX_EVENT_BYTES)
        assert (too_large.value.status, too_large.value.code) == (413, "event_too_large")
        assert "limit" in too_large.value.detail
        assert transport.stats.refusals == 1
        sent = transport.stats.requests
        with pytest.raises(ClientError) as bad_channel:
            await transport.publish("no spaces", 1)
        assert (bad_channel.value.status, bad_channel.value.code) == (400, "invalid_channel")
        with pytest.raises(ClientError) as not_json:
            await transport.publish("news", float("nan"))
        assert not_json.value.code == "invalid_data"
        with pytest.raises(ClientError) as bad_cursor:
            await transport.subscribe("news", after=-1)
        assert bad_cursor.value.code == "invalid_cursor"
        assert transport.stats.requests == sent  # refused before sending


async def test_an_unreachable_api_fails_subscribe_instead_of_hanging() -> None:
    import socket

    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoints = Endpoints(polling_api_url=f"http://127.0.0.1:{port}")
    async with open_transport("polling", endpoints, token=ALL_ACCESS, options=OPTIONS) as transport:
        with pytest.raises(ClientError) as subscribing:
            await transport.subscribe("news")
        assert (subscribing.value.status, subscribing.value.code) == (None, "unreachable")
        with pytest.raises(ClientError) as publishing:
            await transport.publish("news", 1)
        assert publishing.value.code == "unreachable"
        assert not transport.subscriptions


async def test_a_token_provider_is_asked_for_every_request(endpoints: Endpoints) -> None:
    asked = 0

    async def provider() -> str:
        nonlocal asked
        asked += 1
        return ALL_ACCESS

    async with open_transport("polling", endpoints, token=provider, options=OPTIONS) as transport:
        await transport.publish("news", 1)
        subscription = await transport.subscribe("news", after=0)
        await take(subscription, 1)
        requests = transport.stats.requests + subscription.stats.requests
    assert asked >= requests >= 2


async def test_without_a_token_the_refusal_is_401(endpoints: Endpoints) -> None:
    async with open_transport("polling", endpoints, options=OPTIONS) as transport:
        with pytest.raises(ClientError) as refused:
            await transport.subscribe("news")
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        with pytest.raises(ClientError) as refused:
            await transport.publish("news", 1)
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
