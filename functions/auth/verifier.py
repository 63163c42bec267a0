"""Verify a token: signature, expiry and claims, with PyJWT.

``Verifier.verify(token)`` returns the token's ``Claims`` or raises ``Unauthorized``
(401: no token, malformed, wrong signature or algorithm, expired, claims of the
wrong shape). ``Claims.check`` then answers ``Forbidden`` (403) for a scope the
token does not grant. Whatever fails, neither the token nor anything read from it
before it was verified (a header's ``kid``, a malformed segment) is logged or echoed
in an error: each kind of failure has a fixed reason (``_reason``).

Keys, by mode:

- ``hs256``: the key is the shared secret, read from Secrets Manager (``AUTH_SECRET_ARN``)
  through ``auth.secret_cache`` (cached, served while the store is down, rotation-aware:
  the previous version is accepted for a while after a rotation); locally it may be
  given directly (``AUTH_SECRET``). Only HS256 is accepted, so a token cannot pick a
  weaker algorithm, or ``none``.
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

PyJWT is imported by the first verification, not with this module: after FastAPI it
is the largest import of the polling function (more so with ``cryptography`` installed,
which PyJWT then imports too), and what carries no token (a health check, auth ``off``)
never needs it. Without SnapStart the first verification pays it instead of the init;
with SnapStart it is imported before the snapshot (``polling.snapstart``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from auth.claims import ANONYMOUS, Claims, InvalidClaims, Scope
from auth.config import (
    CLOCK_SKEW_SECONDS,
    HS256,
    JWKS_ALGORITHMS,
    JWKS_CACHE_SECONDS,
    JWKS_TIMEOUT_SECONDS,
    OFF_WARNING,
    AuthSettings,
)
from auth.secret_cache import SecretCache, SecretUnavailable
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
        self._secrets = (
            SecretCache(secret_id=settings.secret_arn, client=secrets_client, clock=clock)
            if settings.mode == "hs256" and settings.secret_arn is not None
            else None
        )
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
        import jwt  # see the module docstring: on first use

        try:
            claims = Claims.from_payload(self._decode(token))
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired: get a fresh one") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError, InvalidClaims) as exc:
            raise Unauthorized(f"the token is not valid: {_reason(exc)}") from None
        # The leeway in _decode is for nbf/iat from a clock running ahead; exp is strict.
        if claims.expires_at is not None and self.now() >= claims.expires_at:
            raise Unauthorized("the token has expired: get a fresh one")
        return claims

    def authorize(self, token: str | None, *, channel: str, scope: Scope) -> Claims:
        """Verify ``token`` and check that it grants ``scope`` on ``channel``."""
        claims = self.verify(token)
        claims.check(channel=channel, scope=scope, now=self.now())
        return claims

    # --- Keys ---------------------------------------------------------------------------------

    def _decode(self, token: str) -> dict[str, Any]:
        import jwt

        if self.settings.mode == "jwks":
            return self._decode_with(token, [self._jwks_key(token)], JWKS_ALGORITHMS)
        if self._secrets is None:
            assert self.settings.secret is not None  # AuthSettings demands one or the other
            return self._decode_with(token, [self.settings.secret.encode()], (HS256,))
        keys = self._secret_versions(self._secrets.get)
        try:
            return self._decode_with(token, keys, (HS256,))
        except jwt.InvalidSignatureError:
            # Signed with a secret this container has not seen yet? Re-read (rate limited).
            fresh = self._secret_versions(self._secrets.reread)
            if fresh == keys:
                raise
            return self._decode_with(token, fresh, (HS256,))

    def _secret_versions(self, obtain: Callable[[], Any]) -> tuple[bytes, ...]:
        try:
            versions = obtain()
        except SecretUnavailable as exc:
            raise KeyUnavailable(f"no signing secret: {exc}") from exc
        accepted: tuple[bytes, ...] = versions.accepted(self.now())
        return accepted

    def _decode_with(
        self, token: str, keys: Sequence[Any], algorithms: Sequence[str]
    ) -> dict[str, Any]:
        """The verified payload, with the first key whose signature matches."""
        import jwt

        settings = self.settings
        for index, key in enumerate(keys):
            try:
                payload: dict[str, Any] = jwt.decode(
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
            except jwt.InvalidSignatureError:
                if index == len(keys) - 1:
                    raise
            else:
                return payload
        raise jwt.InvalidSignatureError("no key")

    def _jwks_key(self, token: str) -> Any:
        import jwt

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
            raise Unauthorized(f"the token is not valid: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """A fixed reason per failure: PyJWT's own messages may quote the token (a ``kid``, bytes)."""
    import jwt

    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"it has no {exc.claim} claim"  # one of the names this module requires
    if isinstance(exc, InvalidClaims):
        return str(exc)  # this project's own messages, which quote nothing from the token
    reasons: tuple[tuple[type[BaseException], str], ...] = (
        (jwt.InvalidSignatureError, "its signature does not match"),
        (jwt.InvalidAlgorithmError, "its algorithm is not accepted"),
        (jwt.DecodeError, "it is not a well-formed JWT"),
        (jwt.ImmatureSignatureError, "it is not valid yet"),
        (jwt.InvalidIssuedAtError, "its iat is not valid"),
        (jwt.InvalidAudienceError, "it is not meant for this audience"),
        (jwt.InvalidIssuerError, "it is not from the expected issuer"),
        (jwt.PyJWKClientError, "no key of the provider matches it"),
    )
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    return "it cannot be verified"
