"""Tokens for the benchmark: the one place that knows how the stacks authenticate.

Every server the benchmark measures verifies tokens, as deployed, so the measured
costs include auth (a JWT check per request or per stream, the ``$connect``
authorizer per WebSocket connection):

- ``bench_token(endpoints)``: what the reference clients present to the stack under
  test. ``--token``/``BENCH_TOKEN`` if given (a deployed stack: a token from your
  backend); else, against the local stack, development tokens from its
  ``POST /dev/token``, the way ``python -m client`` gets them; else None.
- ``ServerAuth``: for the servers the fan-out measurements start themselves (an SSE
  process, the local WebSocket gateway): a throwaway secret for their environment
  and a token signed with it for the raw clients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from auth.claims import all_channels
from auth.config import AUTH_MODE_ENV, AUTH_SECRET_ENV
from auth.tokens import generate_secret, issue_token
from client.auth import TokenSource, dev_tokens_for
from eventlog.endpoints import Endpoints

TOKEN_ENV = "BENCH_TOKEN"  # noqa: S105 (the name of a variable)
TOKEN_TTL_SECONDS = 3600
"""Longer than any run, so a raw client's fixed token never expires mid-measurement."""


def bench_token(endpoints: Endpoints, explicit: str | None = None) -> TokenSource:
    """The token (or token provider) the benchmark's reference clients present."""
    given = explicit or os.environ.get(TOKEN_ENV)
    if given:
        return given
    return dev_tokens_for(endpoints)


@dataclass(frozen=True)
class ServerAuth:
    """A secret for servers the benchmark starts, and a token they accept."""

    secret: str = field(default_factory=generate_secret)

    @property
    def environment(self) -> dict[str, str]:
        return {AUTH_MODE_ENV: "hs256", AUTH_SECRET_ENV: self.secret}

    def token(self) -> str:
        return issue_token(
            secret=self.secret,
            subject="bench",
            grants=all_channels(),
            ttl_seconds=TOKEN_TTL_SECONDS,
        ).token
