"""Issue HS256 tokens with the shared secret, in the format the verifier accepts.

Your backend does this once it has decided who the caller is (a session, a login):
it reads the secret from Secrets Manager and hands the browser a short-lived token
with exactly the channels it may use. The local stack's ``POST /dev/token`` and
``python -m client token`` issue development tokens with it.
"""

from __future__ import annotations

import math
import re
import secrets
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass

from auth.claims import Claims, Grant
from auth.config import GENERATED_SECRET_LENGTH, HS256, MAX_TOKEN_TTL_SECONDS, MIN_SECRET_BYTES

_TTL = re.compile(r"(\d{1,7})([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    token: str
    expires_at: int
    """Epoch seconds: the token's ``exp``."""


def issue_token(
    *,
    secret: str,
    subject: str,
    grants: Sequence[Grant],
    ttl_seconds: int,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> IssuedToken:
    """A token for ``subject`` with ``grants``, valid for ``ttl_seconds`` from ``now``."""
    if not 0 < ttl_seconds <= MAX_TOKEN_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be from 1 to {MAX_TOKEN_TTL_SECONDS}")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret must be at least {MIN_SECRET_BYTES} bytes")
    import jwt  # here, not at the top: the CLI imports this module for every command

    moment = now if now is not None else time.time()
    issued_at = int(moment)
    # Rounded up: the token lives at least ttl_seconds, never a fraction of a second less.
    expires_at = math.ceil(moment + ttl_seconds)
    claims = Claims(subject=subject, expires_at=expires_at, grants=tuple(grants))
    payload = {**claims.to_payload(), "iat": issued_at}
    if audience is not None:
        payload["aud"] = audience
    if issuer is not None:
        payload["iss"] = issuer
    token = jwt.encode(payload, secret, algorithm=HS256)
    return IssuedToken(token=token, expires_at=expires_at)


def parse_ttl(raw: str) -> int:
    """A lifetime: seconds (``90``), or with a unit (``90s``, ``15m``, ``1h``, ``1d``)."""
    match = _TTL.fullmatch(raw.strip().lower())
    if not match:
        raise ValueError(f"a lifetime is a number with an optional unit s, m, h or d (got {raw!r})")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= MAX_TOKEN_TTL_SECONDS:
        raise ValueError(f"a lifetime must be from 1 s to {MAX_TOKEN_TTL_SECONDS // 3600} h")
    return seconds


def generate_secret() -> str:
    """A random HS256 secret, in the alphabet Secrets Manager generates for the deployed one."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(GENERATED_SECRET_LENGTH))
