"""The verifier, the claims and their matching, the settings and token issuing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.claims import ANONYMOUS, Claims, Grant, InvalidClaims, grant, parse_grants
from auth.config import (
    CLOCK_SKEW_SECONDS,
    OFF_WARNING,
    AuthSettings,
    mode_from_env,
)
from auth.tokens import generate_secret, issue_token, parse_ttl
from auth.verifier import KeyUnavailable, Verifier, token_from
from eventlog.errors import Forbidden, Unauthorized
from tests.auth_support import (
    TEST_SECRET,
    bad_tokens,
    good_tokens,
    raw_token,
    token,
    verifier,
)

# --- Claims ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "channel", "matches"),
    [
        ("news", "news", True),
        ("news", "news2", False),
        ("news", "new", False),
        ("news*", "news", True),
        ("news*", "news.eu", True),
        ("news*", "new", False),
        ("*", "anything-at_all.1", True),
        ("chat.*", "chat.room-1", True),
        ("chat.*", "chat", False),
    ],
)
def test_a_pattern_is_a_channel_or_a_prefix(pattern: str, channel: str, matches: bool) -> None:
    assert grant(pattern, "subscribe").matches(channel) is matches


def test_a_channel_needs_a_grant_with_the_scope() -> None:
    claims = Claims(
        subject="alice",
        expires_at=None,
        grants=(grant("news*", "subscribe"), grant("news.mine", "publish")),
    )
    assert claims.allows("news.eu", "subscribe")
    assert not claims.allows("news.eu", "publish")
    assert claims.allows("news.mine", "publish")
    assert not claims.allows("sports", "subscribe")
    with pytest.raises(Forbidden, match=r"publish on channel 'news\.eu'"):
        claims.check(channel="news.eu", scope="publish", now=time.time())


def test_expired_claims_are_unauthorized_before_anything_else() -> None:
    claims = Claims(subject="a", expires_at=1000, grants=(grant("*", "subscribe"),))
    claims.check(channel="news", scope="subscribe", now=999.9)
    with pytest.raises(Unauthorized, match="expired"):
        claims.check(channel="news", scope="publish", now=1000)


@pytest.mark.parametrize(
    "raw",
    [
        "news",
        ["news"],
        [{"pattern": "news"}],
        [{"pattern": "news", "scopes": ["read"]}],
        [{"pattern": "news", "scopes": "subscribe"}],
        [{"pattern": "new*s", "scopes": ["subscribe"]}],
        [{"pattern": "", "scopes": ["subscribe"]}],
        [{"pattern": "a b", "scopes": ["subscribe"]}],
        [{"pattern": "x" * 65, "scopes": ["subscribe"]}],
        [{"pattern": "news", "scopes": [], "extra": 1}],
        [{"pattern": "c", "scopes": []}] * 101,
    ],
)
def test_malformed_grants_are_refused(raw: Any) -> None:
    with pytest.raises(InvalidClaims):
        parse_grants(raw)


def test_claims_travel_through_an_authorizer_context_as_strings() -> None:
    claims = Claims(
        subject="alice",
        expires_at=1_795_000_000,
        grants=(grant("news*", "subscribe"), grant("chat", "subscribe", "publish")),
    )
    context = claims.to_context()
    assert all(isinstance(value, str | int) for value in context.values())
    # API Gateway passes every value on as a string, and adds the principal.
    received = {key: str(value) for key, value in context.items()} | {"principalId": "alice"}
    assert Claims.from_context(received) == claims


@pytest.mark.parametrize("context", [None, {}, {"principalId": "x"}, {"channels": "not json"}])
def test_a_missing_or_broken_context_is_unauthorized(context: dict[str, str] | None) -> None:
    with pytest.raises(Unauthorized):
        Claims.from_context(context)


# --- Reading the token from a request ---------------------------------------------------------


def test_the_header_wins_over_the_query_and_must_be_bearer() -> None:
    assert token_from(authorization="Bearer abc", query="def") == "abc"
    assert token_from(authorization="bearer  abc ", query=None) == "abc"
    assert token_from(authorization=None, query="def") == "def"
    assert token_from(authorization=None, query="") is None
    for header in ("Basic dXNlcg==", "Bearer", "Bearer   ", "abc"):
        with pytest.raises(Unauthorized, match="Bearer <token>"):
            token_from(authorization=header, query="def")


# --- HS256 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["subscribe", "publish"])
def test_the_refusals(scope: Any) -> None:
    check = verifier()
    for name, (value, status, code) in bad_tokens(scope).items():
        with pytest.raises((Unauthorized, Forbidden)) as refused:
            check.authorize(value, channel="news", scope=scope)
        assert (refused.value.http_status, refused.value.code) == (status, code), name
        if value:
            assert value not in refused.value.message, name  # never echoed


@pytest.mark.parametrize("scope", ["subscribe", "publish"])
def test_the_grants(scope: Any) -> None:
    check = verifier()
    for name, value in good_tokens(scope).items():
        claims = check.authorize(value, channel="news", scope=scope)
        assert claims.subject == "tester", name


def test_exp_is_strict_while_iat_may_be_a_little_ahead() -> None:
    now = time.time()
    clock = [now]
    check = Verifier(settings=AuthSettings(secret=TEST_SECRET), clock=lambda: clock[0])
    channels = [g.to_json() for g in (grant("*", "subscribe"),)]
    ahead = raw_token(
        {
            "sub": "a",
            "iat": int(now) + CLOCK_SKEW_SECONDS - 5,
            "exp": int(now) + 60,
            "channels": channels,
        }
    )
    assert check.verify(ahead).subject == "a"
    too_far = raw_token(
        {"sub": "a", "nbf": int(now) + 120, "exp": int(now) + 600, "channels": channels}
    )
    with pytest.raises(Unauthorized, match="not valid"):
        check.verify(too_far)
    issued = issue_token(
        secret=TEST_SECRET, subject="a", grants=[grant("*", "subscribe")], ttl_seconds=10
    )
    clock[0] = issued.expires_at - 0.01
    check.verify(issued.token)
    clock[0] = issued.expires_at  # inside PyJWT's leeway, but exp is strict
    with pytest.raises(Unauthorized, match="expired"):
        check.verify(issued.token)


def test_only_hs256_is_accepted_with_the_secret() -> None:
    now = int(time.time())
    payload = {"sub": "a", "exp": now + 60, "channels": []}
    with pytest.raises(Unauthorized):
        verifier().verify(jwt.encode(payload, TEST_SECRET, algorithm="HS384"))


def test_audience_and_issuer_are_checked_when_configured() -> None:
    settings = AuthSettings(secret=TEST_SECRET, audience="realtime", issuer="https://issuer.test")
    check = Verifier(settings=settings)
    grants = [grant("*", "subscribe")]
    good = issue_token(
        secret=TEST_SECRET,
        subject="a",
        grants=grants,
        ttl_seconds=60,
        audience="realtime",
        issuer="https://issuer.test",
    )
    assert check.verify(good.token).subject == "a"
    for audience, issuer in (("other", "https://issuer.test"), ("realtime", "https://evil.test")):
        bad = issue_token(
            secret=TEST_SECRET,
            subject="a",
            grants=grants,
            ttl_seconds=60,
            audience=audience,
            issuer=issuer,
        )
        with pytest.raises(Unauthorized):
            check.verify(bad.token)


def test_the_boto3_client_is_created_lazily_from_the_environment(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    arn = boto3.client("secretsmanager").create_secret(Name="s", SecretString=TEST_SECRET)["ARN"]
    monkeypatch.setenv("AUTH_SECRET_ARN", arn)
    monkeypatch.delenv("AUTH_SECRET")
    check = Verifier.from_env()
    assert check._secrets_client is None
    assert check.verify(token()).subject == "tester"


def test_an_unreadable_secret_is_a_server_fault_not_a_401(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"
    check = Verifier(settings=AuthSettings(secret_arn=missing))
    value = token()
    with pytest.raises(KeyUnavailable) as failed:
        check.verify(value)
    assert (failed.value.http_status, failed.value.code) == (503, "auth_unavailable")
    assert "cannot read the signing secret" in caplog.text
    assert value not in caplog.text


# --- JWKS (an identity provider's keys) ---------------------------------------------------------


class Jwks:
    """A key set served on 127.0.0.1, as an identity provider publishes it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]})
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                body = jwks.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, payload: dict[str, Any], *, kid: str = "k1", algorithm: str = "RS256") -> str:
        return jwt.encode(payload, self.key, algorithm=algorithm, headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    yield served
    served.close()


def test_jwks_tokens_are_verified_with_the_provider_s_public_key(jwks: Jwks) -> None:
    check = Verifier(settings=AuthSettings(mode="jwks", jwks_url=jwks.url, audience="realtime"))
    now = int(time.time())
    channels = [{"pattern": "news", "scopes": ["subscribe"]}]
    payload = {"sub": "cognito-user", "aud": "realtime", "exp": now + 60, "channels": channels}
    claims = check.authorize(jwks.sign(payload), channel="news", scope="subscribe")
    assert claims.subject == "cognito-user"
    fetches = jwks.fetches
    check.verify(jwks.sign(payload))
    assert jwks.fetches == fetches  # the key set is cached

    refused = {
        "unknown kid": (jwks.sign(payload, kid="k2"), "no key"),
        "HS256 with the public key as secret": (hmac_signed_with_public_key(jwks, payload), "alg"),
        "wrong audience": (jwks.sign({**payload, "aud": "other"}), "audience"),
        "expired": (jwks.sign({**payload, "exp": now - 1}), "expired"),
    }
    for name, (value, reason) in refused.items():
        with pytest.raises(Unauthorized, match=reason):
            check.verify(value)
        print(f"refused: {name}")
    with pytest.raises(Forbidden):
        check.authorize(jwks.sign(payload), channel="news", scope="publish")


def hmac_signed_with_public_key(jwks: Jwks, payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HS256, keyed with the provider's public key PEM.

    Anyone has the public key; a verifier that let the token pick HS256 would use the
    PEM as the HMAC secret and accept the token. PyJWT refuses to sign it, so it is built
    here by hand.
    """
    pem = jwks.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def segment(value: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signing_input = segment({"alg": "HS256", "typ": "JWT", "kid": "k1"}) + b"." + segment(payload)
    signature = hmac.new(pem, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def test_nothing_from_an_unverified_token_is_echoed_or_logged(
    jwks: Jwks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    check = Verifier(settings=AuthSettings(mode="jwks", jwks_url=jwks.url))
    marker = "attacker-chosen-kid-7f3a"
    payload = {"sub": "a", "exp": int(time.time()) + 60, "channels": []}
    for value in (
        jwks.sign(payload, kid=marker),
        raw_token(payload, key=TEST_SECRET, algorithm="HS256").replace("eyJ", "eyJ" + marker, 1),
    ):
        with pytest.raises(Unauthorized) as refused:
            check.verify(value)
        assert marker not in refused.value.message
    assert marker not in caplog.text


@pytest.mark.parametrize("segment", ["header", "payload"])
def test_a_token_nested_too_deeply_is_refused_not_a_fault(segment: str) -> None:
    def encoded(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    deep = encoded(b"[" * 5_000)
    header, payload = encoded(b'{"alg":"HS256","typ":"JWT"}'), encoded(b"{}")
    value = f"{deep}.{payload}.c2ln" if segment == "header" else f"{header}.{deep}.c2ln"
    with pytest.raises(Unauthorized, match=r"not a well-formed JWT|signature"):
        verifier().verify(value)


def test_an_unreachable_key_set_is_a_server_fault() -> None:
    check = Verifier(settings=AuthSettings(mode="jwks", jwks_url="http://127.0.0.1:9/jwks.json"))
    with pytest.raises(KeyUnavailable):
        check.verify(raw_token({"sub": "a", "exp": int(time.time()) + 60}))


# --- Settings ---------------------------------------------------------------------------------


def test_hs256_is_the_default_and_needs_a_secret() -> None:
    assert mode_from_env({}) == "hs256"
    with pytest.raises(ValueError, match="AUTH_SECRET_ARN"):
        AuthSettings.from_env({})
    with pytest.raises(ValueError, match="exactly one"):
        AuthSettings(secret=TEST_SECRET, secret_arn="arn:aws:secretsmanager:x")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        AuthSettings(secret="short")
    settings = AuthSettings.from_env(
        {"AUTH_SECRET_ARN": "arn:aws:secretsmanager:x", "AUTH_AUDIENCE": "realtime"}
    )
    assert (settings.mode, settings.audience) == ("hs256", "realtime")


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({"AUTH_MODE": "none"}, "AUTH_MODE must be one of"),
        ({"AUTH_MODE": "jwks"}, "AUTH_JWKS_URL"),
        ({"AUTH_MODE": "jwks", "AUTH_JWKS_URL": "http://idp.example.com/jwks"}, "https"),
    ],
)
def test_settings_that_cannot_work_fail_at_start(environ: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        AuthSettings.from_env(environ)


def test_off_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    check = Verifier(settings=AuthSettings.from_env({"AUTH_MODE": "OFF"}))
    assert check.verify(None) is ANONYMOUS
    assert OFF_WARNING in caplog.text
    assert "AUTH IS OFF" in OFF_WARNING


# --- Issuing ----------------------------------------------------------------------------------


def test_issued_tokens_carry_the_grant_format() -> None:
    issued = issue_token(
        secret=TEST_SECRET,
        subject="dev",
        grants=[grant("news*", "subscribe")],
        ttl_seconds=90,
        now=1000,
    )
    payload = jwt.decode(
        issued.token, TEST_SECRET, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert payload == {
        "sub": "dev",
        "iat": 1000,
        "exp": 1090,
        "channels": [{"pattern": "news*", "scopes": ["subscribe"]}],
    }
    assert issued.expires_at == 1090


@pytest.mark.parametrize(
    ("raw", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1d", 86400)]
)
def test_lifetimes(raw: str, seconds: int) -> None:
    assert parse_ttl(raw) == seconds


@pytest.mark.parametrize("raw", ["", "0", "1w", "2d", "-1h", "h"])
def test_lifetimes_out_of_range(raw: str) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        parse_ttl(raw)


def test_generated_secrets_are_long_and_random() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert len(first) == 64
    assert first.isalnum()
    assert Grant(pattern="x", scopes=frozenset()) not in ANONYMOUS.grants
