"""Auth configuration, defined once: modes, environment variables, defaults.

The infrastructure sets these variables on every function and task that verifies
tokens, and the local stack sets them in its own process; both import the names
from here. Nothing in this module imports a JWT library or an AWS SDK.

=====================  ===========  =====================================================
variable               default      meaning
=====================  ===========  =====================================================
``AUTH_MODE``          ``hs256``    ``hs256``: tokens signed with a shared secret;
                                    ``jwks``: tokens of an identity provider, checked
                                    with its public keys; ``off``: no auth at all
``AUTH_SECRET_ARN``                 hs256: the Secrets Manager secret holding the key
``AUTH_SECRET``                     hs256, local development only: the key itself
``AUTH_JWKS_URL``                   jwks: where the provider publishes its keys
``AUTH_AUDIENCE``                   if set, a token's ``aud`` must contain it
``AUTH_ISSUER``                     if set, a token's ``iss`` must equal it
=====================  ===========  =====================================================

``off`` is never silent: every server logs ``OFF_WARNING`` when it starts, and the
local stack prints it in its banner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

AuthMode = Literal["hs256", "jwks", "off"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)
DEFAULT_AUTH_MODE: AuthMode = "hs256"

AUTH_MODE_ENV = "AUTH_MODE"
AUTH_SECRET_ARN_ENV = "AUTH_SECRET_ARN"
AUTH_SECRET_ENV = "AUTH_SECRET"
AUTH_JWKS_URL_ENV = "AUTH_JWKS_URL"
AUTH_AUDIENCE_ENV = "AUTH_AUDIENCE"
AUTH_ISSUER_ENV = "AUTH_ISSUER"

TOKEN_QUERY_PARAMETER = "token"
"""Where browsers put the token: ``EventSource`` and ``WebSocket`` cannot set headers."""

HS256 = "HS256"
JWKS_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
"""What a JWKS-verified token may be signed with: asymmetric algorithms only, so a token
signed with a public key used as an HMAC secret (algorithm confusion) is refused."""

MIN_SECRET_BYTES = 32
"""An HS256 key must be at least as long as the hash, 256 bits (RFC 7518, section 3.2)."""

GENERATED_SECRET_LENGTH = 64
"""Characters of the secret generated at deploy and for local development (letters and
digits, about 380 bits)."""

CLOCK_SKEW_SECONDS = 30
"""Tolerance for ``nbf`` and ``iat`` a little in the future: the clock that minted the
token may run ahead. ``exp`` gets none: a token is refused from its ``exp`` on, so a stream
that ends when its token expires cannot be reopened with the same token."""

SECRET_CACHE_SECONDS = 300
"""How long a container keeps the HS256 key before reading Secrets Manager again: two
``GetSecretValue`` calls (current and previous version) per container per 5 minutes."""

SECRET_REREAD_AFTER_SECONDS = 30
"""A token that no cached secret verifies makes a container re-read the secret (it may have
been rotated) if its copy is at least this old: at most one such read per 30 s."""

SECRET_ROTATION_OVERLAP_SECONDS = 60 * 60
"""How long after a rotation tokens signed with the previous secret (``AWSPREVIOUS``) are
still accepted. Set it to the longest lifetime of the tokens your backend issues (the
development tokens default to an hour); longer keeps a replaced secret useful for longer."""

SECRET_RETRY_FIRST_SECONDS = 1.0
SECRET_RETRY_MAX_SECONDS = 60.0
"""Backoff between reads of a secret store that fails: doubling from 1 s up to 60 s. The
cached secret is served meanwhile."""

SECRET_CONNECT_TIMEOUT_SECONDS = 1.0
SECRET_READ_TIMEOUT_SECONDS = 2.0
SECRET_MAX_ATTEMPTS = 2
"""The Secrets Manager client's timeouts and tries (botocore's defaults are 60 s each): a
slow store costs a request at most 2 x 3 s, and only the first request of a container."""

JWKS_CACHE_SECONDS = 300
"""How long a container keeps the provider's key set; an unknown ``kid`` refetches it."""

JWKS_TIMEOUT_SECONDS = 5
"""Longest wait for the key set: far inside the 29 s an authorizer has."""

DEFAULT_TOKEN_TTL_SECONDS = 60 * 60
"""Lifetime of a development token unless asked otherwise."""

MAX_TOKEN_TTL_SECONDS = 24 * 60 * 60
"""Longest lifetime the development token endpoint and command issue."""

OFF_WARNING = (
    "AUTH IS OFF (AUTH_MODE=off): anyone who can reach this endpoint may subscribe and "
    "publish on every channel. Use it only for a throwaway demo."
)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def mode_from_env(environ: Mapping[str, str] | None = None) -> AuthMode:
    """``AUTH_MODE``, checked; the WebSocket route handlers need only this."""
    raw = _env(os.environ if environ is None else environ, AUTH_MODE_ENV) or DEFAULT_AUTH_MODE
    mode = raw.lower()
    for known in AUTH_MODES:
        if mode == known:
            return known
    raise ValueError(f"{AUTH_MODE_ENV} must be one of {', '.join(AUTH_MODES)}, got {raw!r}")


def _is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """What a verifier needs; ``from_env`` reads the variables in the module docstring.

    A setting that cannot work fails here, at start, rather than as 401s later: hs256
    needs exactly one of ``secret_arn`` and ``secret``; jwks needs an https
    ``jwks_url`` (http only on the loopback, for tests).
    """

    mode: AuthMode = DEFAULT_AUTH_MODE
    secret: str | None = None
    secret_arn: str | None = None
    jwks_url: str | None = None
    audience: str | None = None
    issuer: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in AUTH_MODES:
            raise ValueError(f"mode must be one of {', '.join(AUTH_MODES)}, got {self.mode!r}")
        if self.mode == "hs256":
            if (self.secret is None) == (self.secret_arn is None):
                raise ValueError(
                    f"{AUTH_MODE_ENV}=hs256 (the default) needs exactly one of "
                    f"{AUTH_SECRET_ARN_ENV} (deployed) and {AUTH_SECRET_ENV} (local development); "
                    f"for a throwaway demo without auth set {AUTH_MODE_ENV}=off"
                )
            if self.secret is not None and len(self.secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"{AUTH_SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes")
        if self.mode == "jwks":
            parts = urlsplit(self.jwks_url or "")
            secure = parts.scheme == "https" or (
                parts.scheme == "http" and _is_loopback(parts.hostname)
            )
            if not parts.hostname or not secure:
                raise ValueError(
                    f"{AUTH_MODE_ENV}=jwks needs {AUTH_JWKS_URL_ENV}, an https URL "
                    f"(got {self.jwks_url!r})"
                )

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthSettings:
        env = os.environ if environ is None else environ
        return cls(
            mode=mode_from_env(env),
            secret=_env(env, AUTH_SECRET_ENV),
            secret_arn=_env(env, AUTH_SECRET_ARN_ENV),
            jwks_url=_env(env, AUTH_JWKS_URL_ENV),
            audience=_env(env, AUTH_AUDIENCE_ENV),
            issuer=_env(env, AUTH_ISSUER_ENV),
        )
