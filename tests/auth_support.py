"""Tokens for tests: the test secret (set in the environment by conftest), and token makers.

``token()`` issues a token the way the project does (``auth.tokens``); ``raw_token()``
signs any payload with any key and algorithm, for the tokens the project would never
issue (missing claims, a wrong signature, ``alg: none``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt

from auth.claims import Claims, Grant, Scope, all_channels, grant
from auth.config import AuthSettings
from auth.tokens import issue_token
from auth.verifier import Verifier

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
"""The HS256 secret of every test app that verifies tokens (``AUTH_SECRET`` in conftest)."""

OTHER_SECRET = "another-secret-0123456789-abcdefghijklmnopqrstuvw"

HS256_SETTINGS = AuthSettings(mode="hs256", secret=TEST_SECRET)


def verifier() -> Verifier:
    return Verifier(settings=HS256_SETTINGS)


def auth_off() -> Verifier:
    """A verifier that lets everything through (and logs that auth is off)."""
    return Verifier(settings=AuthSettings(mode="off"))


def token(
    *grants: Grant,
    subject: str = "tester",
    ttl_seconds: int = 3600,
    secret: str = TEST_SECRET,
) -> str:
    """A valid token; without grants it may do everything on every channel."""
    return issue_token(
        secret=secret,
        subject=subject,
        grants=grants or all_channels(),
        ttl_seconds=ttl_seconds,
    ).token


def raw_token(payload: dict[str, Any], *, key: Any = TEST_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def expired_token(*scopes: Scope) -> str:
    now = int(time.time())
    grants: Sequence[Grant] = all_channels(*scopes)
    return raw_token(
        {
            "sub": "tester",
            "iat": now - 7200,
            "exp": now - 3600,
            "channels": [g.to_json() for g in grants],
        }
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


ALL_ACCESS = token(ttl_seconds=24 * 3600)
"""Every scope on every channel for a day: for tests about something other than auth."""


def bad_tokens(scope: Scope) -> dict[str, tuple[str | None, int, str]]:
    """The refusals every transport must make, by name: (token, HTTP status, code).

    A token granting only the other scope, or only another channel, is valid: 403.
    """
    other: Scope = "publish" if scope == "subscribe" else "subscribe"
    now = int(time.time())
    channels = [{"pattern": "news", "scopes": [scope]}]
    return {
        "no token": (None, 401, "unauthorized"),
        "malformed": ("not-a-jwt", 401, "unauthorized"),
        "wrong signature": (token(secret=OTHER_SECRET), 401, "unauthorized"),
        "alg none": (
            raw_token(
                {"sub": "x", "exp": now + 60, "channels": channels}, key=None, algorithm="none"
            ),
            401,
            "unauthorized",
        ),
        "no channels claim": (raw_token({"sub": "x", "exp": now + 60}), 401, "unauthorized"),
        "expired": (expired_token(), 401, "unauthorized"),
        "wrong channel": (token(grant("sports*", scope)), 403, "forbidden"),
        "wrong scope": (token(grant("news", other)), 403, "forbidden"),
    }


def good_tokens(scope: Scope) -> dict[str, str]:
    """Tokens that must be accepted for ``scope`` on the channel ``news``."""
    return {
        "exact": token(grant("news", scope)),
        "prefix": token(grant("ne*", scope)),
        "everything": token(grant("*", "subscribe", "publish")),
    }


def authorizer_context(*grants: Grant, expires_at: int | None = None) -> dict[str, str]:
    """``requestContext.authorizer`` as API Gateway passes the authorizer's context on:
    every value a string, and the principal added."""
    claims = Claims(
        subject="tester",
        expires_at=expires_at if expires_at is not None else int(time.time()) + 3600,
        grants=grants or all_channels(),
    )
    context = {key: str(value) for key, value in claims.to_context().items()}
    return {**context, "principalId": claims.subject}
