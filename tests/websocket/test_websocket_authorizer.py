"""The ``$connect`` REQUEST authorizer, called with API Gateway's authorizer events."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from auth.claims import Claims, grant
from auth.config import AuthSettings
from auth.verifier import KeyUnavailable, Verifier
from local.websocket_gateway import authorizer_context
from tests.auth_support import bad_tokens, good_tokens, token, verifier
from websocket_api import authorizer

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/ws/$connect"


@pytest.fixture(autouse=True)
def test_verifier() -> Iterator[None]:
    authorizer.use_verifier(verifier())
    yield
    authorizer.use_verifier(None)


def authorizer_event(value: str | None) -> dict[str, Any]:
    """A REQUEST authorizer event of a WebSocket ``$connect``, as API Gateway sends it."""
    query = {"token": value} if value is not None else None
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": {"Host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {"token": [value]} if value is not None else None,
        "stageVariables": {},
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "connectionId": "Lx9fXc3rIAMCJ9A=",
            "stage": "ws",
            "apiId": "a1b2c3d4e5",
        },
    }


UNAUTHORIZED = [name for name, (_, status, _) in bad_tokens("subscribe").items() if status == 401]


@pytest.mark.parametrize("name", UNAUTHORIZED)
def test_no_or_bad_tokens_raise_unauthorized_which_api_gateway_answers_401(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    value = bad_tokens("subscribe")[name][0]
    with pytest.raises(Exception) as raised:  # noqa: PT011 (checked exactly below)
        authorizer.handler(authorizer_event(value))
    # Exactly API Gateway's convention: this type and this message mean 401.
    assert (type(raised.value), str(raised.value)) == (Exception, "Unauthorized")
    if value:
        assert value not in caplog.text


@pytest.mark.parametrize("name", ["exact", "prefix", "everything"])
def test_a_valid_token_is_allowed_with_its_claims_as_context(name: str) -> None:
    value = good_tokens("subscribe")[name]
    result = authorizer.handler(authorizer_event(value))
    statement = result["policyDocument"]["Statement"]
    assert statement == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}
    ]
    assert result["principalId"] == "tester"
    context = result["context"]
    assert all(isinstance(v, str | int) and not isinstance(v, bool) for v in context.values())
    # What the routes get: API Gateway's rendering of it (the local gateway's, checked there).
    passed = authorizer_context(result, method_arn=METHOD_ARN)
    claims = Claims.from_context(passed)
    assert claims == verifier().verify(value)
    assert claims.allows("news", "subscribe")


def test_wrong_channel_or_scope_still_connects_the_check_is_per_action() -> None:
    for name in ("wrong channel", "wrong scope"):
        result = authorizer.handler(authorizer_event(bad_tokens("subscribe")[name][0]))
        assert result["policyDocument"]["Statement"][0]["Effect"] == "Allow", name


def test_a_token_that_grants_nothing_is_denied_which_is_403() -> None:
    result = authorizer.handler(authorizer_event(token(grant("news"))))
    assert result["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in result


def test_claims_that_would_not_fit_the_8_kb_result_are_denied() -> None:
    grants = [grant(f"{n:02d}" + "x" * 60 + "*", "subscribe", "publish") for n in range(100)]
    result = authorizer.handler(authorizer_event(token(*grants)))
    assert result["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert len(json.dumps(result)) < 1024


def test_an_unreadable_key_is_a_server_fault_not_a_401() -> None:
    class Failing:
        def get_secret_value(self, **_kwargs: Any) -> Any:
            raise ConnectionError("no route to Secrets Manager")

    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:auth-AbCdEf"
    authorizer.use_verifier(
        Verifier(settings=AuthSettings(secret_arn=arn), secrets_client=Failing())
    )
    with pytest.raises(KeyUnavailable):
        authorizer.handler(authorizer_event(token()))
