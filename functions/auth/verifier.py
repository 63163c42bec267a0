"""Verify a token: signature, expiry and claims, with PyJWT.

``Verifier.verify(token)`` returns the token's ``Claims`` or raises ``Unauthorized``
(401: no token, malformed, wrong signature or algorithm, expired, claims of the
wrong shape). ``Claims.check`` then answers ``Forbidden`` (403) for a scope the
token does not grant. Whatever fails, the token itself is never logged nor echoed
in an error.

Keys, by mode:

- ``hs256``: the key is the shared secret, read from Secrets Manager (``AUTH_SECRET_ARN``)
  with a boto3 client created on first use and kept, cached for
  ``SECRET_CACHE_SECONDS``; locally it may be given directly (``AUTH_SECRET``). Only
  HS256 is accepted, so a token cannot pick a weaker algorithm, or ``none``.
- ``jwks``: the key is the provider's public key named by the token's ``kid``, from
  ``AUTH_JWKS_URL`` through PyJWT's ``PyJWKClient``, which caches the key set and
  refetches it for a ``kid`` it does not know (key rotation). Asymmetric
  algorithms only (``JWKS_ALGORITHMS``). Needs the ``cryptography`` package (the
  ``jwks`` dependency group).
- ``off``: no check; every caller is ``ANONYMOUS``.

A failure to get the key (Secrets Manager or the key set unreachable) is not the
caller's fault: it is logged and raises ``KeyUnavailable``, which HTTP transports
answer 503 ``auth_unavailable`` with ``Retry-After``, never a 401 that would make
clients throw their tokens away.

Verification may do network I/O (the first call in a container, then once per
cache period): async callers run it in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt

from auth.claims import ANONYMOUS, Claims, InvalidClaims, Scope
from auth.config import (
    CLOCK_SKEW_SECONDS,
    HS256,
    JWKS_ALGORITHMS,
    JWKS_CACHE_SECONDS,
    JWKS_TIMEOUT_SECONDS,
    MIN_SECRET_BYTES,
    OFF_WARNING,
    SECRET_CACHE_SECONDS,
    AuthSettings,
)
from eventlog.errors import EventLogError, Unauthorized

logger = logging.getLogger(__name__)


class KeyUnavailable(EventLogError):
    """The verification key could not be fetched: a server fault, not a bad token."""

    code = "auth_unavailable"
    http_status = 503

    def __init__(self, message: str) -> None:
        super().__init__("tokens cannot be verified right now; retry shortly")
        logger.error("%s", message)


def token_from(*, authorization: str | None, query: str | None) -> str | None:
    """The token of an HTTP request: ``Authorization: Bearer <token>``, else ``?token=``.

    A header that is there but not a bearer token is refused rather than ignored, so
    a client that sends the wrong scheme hears about it.
    """
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be `Bearer <token>`")
        return value.strip()
    return query or None


class Verifier:
    """Verifies tokens as ``settings`` say; one per process, shared by every request."""

    def __init__(
        self,
        *,
        settings: AuthSettings,
        secrets_client: Any = None,
        jwks_client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._secrets_client = secrets_client
        self._jwks_client = jwks_client
        self._clock = clock
        self._lock = threading.Lock()
        self._secret: bytes | None = None
        self._secret_read_at = 0.0
        if not settings.enabled:
            logger.warning(OFF_WARNING)

    @classmethod
    def from_env(cls) -> Verifier:
        return cls(settings=AuthSettings.from_env())

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def now(self) -> float:
        """The verifier's clock, epoch seconds: what expiry is measured against."""
        return self._clock()

    def verify(self, token: str | None) -> Claims:
        """The token's claims, or ``Unauthorized``; ``ANONYMOUS`` when auth is off."""
        if not self.enabled:
            return ANONYMOUS
        if not token:
            raise Unauthorized(
                "this endpoint needs a token: send `Authorization: Bearer <token>`, "
                "or ?token=<token> where headers cannot be set",
                token_sent=False,
            )
        key, algorithms = self._key_for(token)
        settings = self.settings
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=list(algorithms),
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": settings.audience is not None,
                    # A short key from a provider is refused, not merely warned about.
                    "enforce_minimum_key_length": True,
                },
            )
            claims = Claims.from_payload(payload)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired: get a fresh one") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError, InvalidClaims) as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from None
        # The leeway above is for nbf/iat from a clock running ahead; exp is strict.
        if claims.expires_at is not None and self.now() >= claims.expires_at:
            raise Unauthorized("the token has expired: get a fresh one")
        return claims

    def authorize(self, token: str | None, *, channel: str, scope: Scope) -> Claims:
        """Verify ``token`` and check that it grants ``scope`` on ``channel``."""
        claims = self.verify(token)
        claims.check(channel=channel, scope=scope, now=self.now())
        return claims

    # --- Keys ---------------------------------------------------------------------------------

    def _key_for(self, token: str) -> tuple[Any, tuple[str, ...]]:
        if self.settings.mode == "jwks":
            return self._jwks_key(token), JWKS_ALGORITHMS
        return self._hs256_secret(), (HS256,)

    def _hs256_secret(self) -> bytes:
        if self.settings.secret is not None:
            return self.settings.secret.encode()
        now = self._clock()
        if self._secret is None or now - self._secret_read_at >= SECRET_CACHE_SECONDS:
            with self._lock:  # one read at a time; boto3 clients are created once
                if self._secret is None or now - self._secret_read_at >= SECRET_CACHE_SECONDS:
                    self._secret = self._read_secret()
                    self._secret_read_at = now
        return self._secret

    def _read_secret(self) -> bytes:
        if self._secrets_client is None:
            import boto3  # on first use: importing it costs a cold start more than it needs

            self._secrets_client = boto3.client("secretsmanager")
        try:
            value = self._secrets_client.get_secret_value(SecretId=self.settings.secret_arn)
        except Exception as exc:
            raise KeyUnavailable(f"cannot read the signing secret: {exc}") from exc
        secret = value.get("SecretString")
        if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
            raise KeyUnavailable(f"the signing secret is not a string of {MIN_SECRET_BYTES}+ bytes")
        return secret.encode()

    def _jwks_key(self, token: str) -> Any:
        if self._jwks_client is None:
            with self._lock:
                if self._jwks_client is None:
                    self._jwks_client = jwt.PyJWKClient(
                        str(self.settings.jwks_url),
                        cache_jwk_set=True,
                        lifespan=JWKS_CACHE_SECONDS,
                        timeout=JWKS_TIMEOUT_SECONDS,
                    )
        try:
            return self._jwks_client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise KeyUnavailable(f"cannot fetch the key set: {exc}") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from None
