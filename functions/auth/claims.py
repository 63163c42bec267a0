"""What a token grants, and whether it covers a channel: pure, no JWT library.

``Claims`` is the verified content of a token. It travels two ways: decoded from the
token (``from_payload``, by the verifier), and through API Gateway as a Lambda
authorizer's context (``to_context`` / ``from_context``). API Gateway accepts only
strings, numbers and booleans as context values, so the grants go as one JSON
string, and every value comes back a string.

The grant format (see ``auth``): ``channels`` is a list of objects
``{"pattern": <channel> | <prefix>*, "scopes": [<scope>, ...]}``. One explicit form
and no shorthands, so a token means the same thing to every reader of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from eventlog.errors import Forbidden, Unauthorized

Scope = Literal["subscribe", "publish"]
SCOPES: tuple[Scope, ...] = get_args(Scope)

CHANNEL_GRANT_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}|[A-Za-z0-9_.\-]{0,63}\*")
"""A grant's pattern: a channel name, or a prefix of one followed by ``*``."""

MAX_GRANTS = 100
"""Most grants one token may carry: the claims must fit API Gateway's 8 KB authorizer
result (about 60 bytes a grant)."""


class InvalidClaims(ValueError):
    """A token's claims that do not have the shape this module defines.

    Its message says what is wrong and quotes nothing from the token: it becomes a 401's
    detail, and a client must not be able to make a server echo or log what it sent."""


@dataclass(frozen=True, slots=True)
class Grant:
    """``scopes`` on every channel ``pattern`` matches."""

    pattern: str
    scopes: frozenset[Scope]

    def matches(self, channel: str) -> bool:
        if self.pattern.endswith("*"):
            return channel.startswith(self.pattern[:-1])
        return channel == self.pattern

    def to_json(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "scopes": [s for s in SCOPES if s in self.scopes]}


def grant(pattern: str, *scopes: Scope) -> Grant:
    """A checked grant: ``grant("news*", "subscribe")``."""
    return parse_grants([{"pattern": pattern, "scopes": list(scopes)}])[0]


def parse_grants(raw: object) -> tuple[Grant, ...]:
    """The ``channels`` claim, checked; ``InvalidClaims`` says what is wrong with it."""
    shape = 'a list of {"pattern": "<channel>" or "<prefix>*", "scopes": [...]}'
    if not isinstance(raw, list):
        raise InvalidClaims(f"the channels claim must be {shape}")
    if len(raw) > MAX_GRANTS:
        raise InvalidClaims(f"the channels claim has over {MAX_GRANTS} grants")
    grants = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"pattern", "scopes"}:
            raise InvalidClaims(f"the channels claim must be {shape}")
        pattern, scopes = item["pattern"], item["scopes"]
        if not isinstance(pattern, str) or not CHANNEL_GRANT_PATTERN.fullmatch(pattern):
            raise InvalidClaims("a grant's pattern must be a channel name or a prefix ending in *")
        if not isinstance(scopes, list) or not all(s in SCOPES for s in scopes):
            raise InvalidClaims(f"a grant's scopes must be a list of {', '.join(SCOPES)}")
        grants.append(Grant(pattern=pattern, scopes=frozenset(scopes)))
    return tuple(grants)


@dataclass(frozen=True, kw_only=True)
class Claims:
    """A verified caller: ``subject``, until ``expires_at`` (epoch seconds), with ``grants``."""

    subject: str
    expires_at: int | None
    """None only for ``ANONYMOUS``, the caller when auth is off."""
    grants: tuple[Grant, ...]

    def allows(self, channel: str, scope: Scope) -> bool:
        return any(scope in g.scopes and g.matches(channel) for g in self.grants)

    def check(self, *, channel: str, scope: Scope, now: float) -> None:
        """Raise ``Unauthorized`` if expired, ``Forbidden`` if ``scope`` is not granted."""
        if self.expires_at is not None and now >= self.expires_at:
            raise Unauthorized("the token has expired: get a fresh one and reconnect")
        if not self.allows(channel, scope):
            raise Forbidden(f"this token does not grant {scope} on channel {channel!r}")

    # --- From a token ---------------------------------------------------------------------

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Claims:
        """From a token's verified payload; ``InvalidClaims`` if a claim has the wrong shape."""
        subject, expires_at = payload.get("sub"), payload.get("exp")
        if not isinstance(subject, str) or not subject:
            raise InvalidClaims("the sub claim must be a non-empty string")
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise InvalidClaims("the exp claim must be a number")
        if "channels" not in payload:
            raise InvalidClaims("the token has no channels claim: it grants nothing")
        return cls(
            subject=subject, expires_at=int(expires_at), grants=parse_grants(payload["channels"])
        )

    def to_payload(self) -> dict[str, Any]:
        return {
            "sub": self.subject,
            "exp": self.expires_at,
            "channels": [g.to_json() for g in self.grants],
        }

    # --- Through API Gateway ----------------------------------------------------------------

    def to_context(self) -> dict[str, str | int]:
        """A Lambda authorizer's ``context``: strings and numbers only, as API Gateway demands."""
        channels = json.dumps([g.to_json() for g in self.grants], separators=(",", ":"))
        context: dict[str, str | int] = {"sub": self.subject, "channels": channels}
        if self.expires_at is not None:
            context["exp"] = self.expires_at
        return context

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None) -> Claims:
        """Back from ``requestContext.authorizer``, where every value arrives as a string."""
        if not context or "channels" not in context:
            raise Unauthorized(
                "this connection was not authorized: connect with ?token=<token>",
                token_sent=False,
            )
        try:
            expires_at = context.get("exp")
            return cls(
                subject=str(context.get("sub") or context.get("principalId") or ""),
                expires_at=None if expires_at is None else int(expires_at),
                grants=parse_grants(json.loads(context["channels"])),
            )
        except (TypeError, ValueError) as exc:  # InvalidClaims is a ValueError
            raise Unauthorized(f"the connection's authorizer context is malformed: {exc}") from None


ANONYMOUS = Claims(
    subject="anonymous", expires_at=None, grants=(Grant(pattern="*", scopes=frozenset(SCOPES)),)
)
"""The caller when auth is off: every scope on every channel, forever."""


def all_channels(*scopes: Scope) -> tuple[Grant, ...]:
    """Grants of ``scopes`` (default: all) on every channel: for development tokens."""
    return (Grant(pattern="*", scopes=frozenset(scopes or SCOPES)),)
