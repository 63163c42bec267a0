"""Tokens for the client: a fixed string, or a provider asked before every connection.

Every transport takes ``token=``: ``None`` (no auth), a token string, or an async
callable that returns one (``TokenProvider``). A provider is asked for each HTTP
request and each new connection, so it can hand out a fresh token when the last
one is about to expire: that is how a subscription survives its token's lifetime.
An SSE stream ends with ``event: expired`` when its token does; the reconnect asks
the provider again and resumes from ``Last-Event-ID``. A WebSocket reconnect does
the same. A fixed string has no such way out: once it expires, the next request
is refused with 401 and the subscription ends.

Polling and SSE send the token as ``Authorization: Bearer``; the WebSocket
transport puts it in ``?token=`` (see ``client.websocket``).

``DevTokens`` is a provider for the local stack: it asks the stack's
``POST /dev/token`` (the endpoints file's ``LocalDevTokenUrl``) and renews the
token shortly before it expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from client.errors import ClientError, protocol_error, unreachable
from eventlog.endpoints import Endpoints

TokenProvider = Callable[[], Awaitable[str]]
TokenSource = str | TokenProvider | None

RENEW_BEFORE_SECONDS = 30.0
"""A provider's token is renewed this long before it expires (at most half its lifetime),
so a request never leaves with a token that expires on the way."""


class Credentials:
    """A transport's token source, applied to requests."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def token(self) -> str | None:
        if self._source is None or isinstance(self._source, str):
            return self._source or None
        return await self._source()

    async def authorize(self, request: httpx.Request) -> None:
        """Set the request's ``Authorization`` header, if there is a token."""
        token = await self.token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"


class DevTokens:
    """Development tokens from the local stack, renewed before they expire.

    ``channels``: the grants to ask for (``[{"pattern": ..., "scopes": [...]}]``);
    default: what the stack gives by default, every scope on every channel.
    """

    def __init__(
        self,
        url: str,
        *,
        channels: Sequence[dict[str, Any]] | None = None,
        ttl_seconds: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._body: dict[str, Any] = {}
        if channels is not None:
            self._body["channels"] = list(channels)
        if ttl_seconds is not None:
            self._body["ttl"] = ttl_seconds
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._renew_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.issued = 0
        """How many tokens were fetched (a test and a curious user can see renewals)."""

    async def __call__(self) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(self.url, json=self._body)
        except httpx.TransportError as exc:
            raise unreachable(exc, url=self.url) from exc
        if response.status_code != 200:
            raise ClientError.from_http(
                status=response.status_code, headers=response.headers, body=response.content
            )
        try:
            reply = response.json()
            token, expires_at = reply["token"], float(reply["expires_at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise protocol_error(f"not a token reply ({exc})") from None
        now = self._clock()
        self._token, self._expires_at = str(token), expires_at
        self._renew_at = expires_at - min(RENEW_BEFORE_SECONDS, (expires_at - now) / 2)
        self.issued += 1


def dev_tokens_for(endpoints: Endpoints, **kwargs: Any) -> DevTokens | None:
    """A ``DevTokens`` provider if ``endpoints`` are the local stack's with auth on, else None."""
    return DevTokens(endpoints.dev_token_url, **kwargs) if endpoints.dev_token_url else None
