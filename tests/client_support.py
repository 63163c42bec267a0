"""Helpers for the reference client's tests: real servers on 127.0.0.1, and waiting without
timing anything (every wait has a generous deadline only so a broken test fails, not hangs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI

from auth.config import AuthSettings
from auth.verifier import Verifier
from client.base import Subscription
from eventlog.config import Settings
from eventlog.events import Event
from eventlog.http_api import event_routes
from eventlog.log import EventLog
from eventlog.problems import install_problem_handlers
from tests.sse_support import LiveServer

DEADLINE_SECONDS = 15.0

RETENTION_SECONDS = 3600
"""Retention of the test logs; a test ages its events past it with ``Clock.advance``."""


class Clock:
    """A clock for the event log that a test moves forward, to expire history."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def log_api_app(log: EventLog) -> FastAPI:
    """The log's HTTP API alone (``eventlog.http_api``), as the polling API and the SSE service
    both serve it: where a WebSocket client fills its gaps, whichever of them is deployed.
    No auth: the WebSocket tests' servers check none either (auth has its own tests)."""
    app = FastAPI()
    install_problem_handlers(app)
    no_auth = Verifier(settings=AuthSettings(mode="off"))
    app.router.routes.extend(event_routes(log=lambda: log, verifier=no_auth))
    return app


@contextmanager
def live(app: FastAPI) -> Iterator[LiveServer]:
    """uvicorn serving ``app`` in a thread; an SSE app's streams are drained at the end."""
    server = LiveServer(app)
    server.__enter__()
    try:
        yield server
    finally:
        server.stop(drain=hasattr(app.state, "hub"))


async def eventually(condition: Callable[[], bool], *, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def take(subscription: Subscription, count: int) -> list[Event]:
    """The next ``count`` events of the subscription."""
    events: list[Event] = []
    async with asyncio.timeout(DEADLINE_SECONDS):
        while len(events) < count:
            events.append(await anext(subscription))
    return events


DISORDER = (1, 0, 0, 2, 4, 3, 1, 5, 5)
"""Deliveries of six events, reordered and three of them twice: what a fan-out that
promises no order can do."""


async def deliver_in_disorder(
    log: EventLog, subscription: Subscription, deliver: Callable[[Event], Awaitable[None]]
) -> list[Event]:
    """Publish six events, deliver them in ``DISORDER``; the application gets each once, in
    order (asserted). Returns the events."""
    events = [log.publish(subscription.channel, n) for n in range(6)]
    for index in DISORDER:
        await deliver(events[index])
    assert await take(subscription, 6) == events
    return events


def seqs(events: list[Event]) -> list[int]:
    return [event.seq for event in events]


# Fixtures shared by the client's test modules (registered as a plugin in conftest.py).


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def event_log(dynamodb: object, events_table: str, clock: Clock) -> EventLog:
    """The log the live servers under test read, with a clock the test moves."""
    settings = Settings(events_table_name=events_table, retention_seconds=RETENTION_SECONDS)
    return EventLog(settings=settings, client=dynamodb, clock=clock)
