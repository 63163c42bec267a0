"""The ``$connect`` Lambda REQUEST authorizer: verify the token once, pass its claims on.

A browser cannot set headers on a WebSocket, so the token comes as ``?token=``
(the authorizer's identity source, ``IDENTITY_SOURCE``: API Gateway answers 401 by
itself, without invoking this function, when it is missing). What API Gateway does
with each answer:

- ``raise Exception("Unauthorized")`` -> 401, no connection: no token, or one that
  is malformed, wrongly signed or expired. The exact message is API Gateway's
  convention; any other exception is a 500.
- a policy that denies ``execute-api:Invoke`` -> 403: a valid token that grants no
  scope on any channel, or whose claims would not fit the 8 KB authorizer result.
- a policy that allows it -> the connection opens, and the ``context`` returned here
  reaches every later route of the connection as ``requestContext.authorizer``,
  where ``websocket_api.routes.authorize`` checks each ``subscribe`` and ``publish``
  against it. Context values may only be strings, numbers and booleans, so the
  grants travel as one JSON string (``auth.claims.Claims.to_context``).

The claims are checked once, here, and never re-verified: the route handlers trust
the context because only API Gateway can put it there. Authorizer results are not
cached (WebSocket APIs do not cache them), so every connect verifies its token.

The event carries the token: it is never logged, here or by API Gateway (this
function logs only the subject and the decision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from auth.config import TOKEN_QUERY_PARAMETER
from auth.verifier import KeyUnavailable, Verifier
from eventlog.config import WEBSOCKET_AUTHORIZER_RESULT_MAX_BYTES
from eventlog.errors import Unauthorized
from eventlog.structured_logs import fields, install

logger = logging.getLogger(__name__)

_verifier: Verifier | None = None


def verifier() -> Verifier:
    """The container's verifier, from the environment, made on first use."""
    global _verifier
    if _verifier is None:
        _verifier = Verifier.from_env()
    return _verifier


def use_verifier(replacement: Verifier | None) -> None:
    """Swap the verifier (tests, the local stack); None goes back to the environment."""
    global _verifier
    _verifier = replacement


def policy(principal_id: str, effect: str, resource: str) -> dict[str, Any]:
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Allow with the token's claims as context, Deny, or raise ``Unauthorized`` (401)."""
    token = (event.get("queryStringParameters") or {}).get(TOKEN_QUERY_PARAMETER)
    method_arn = event["methodArn"]
    context_ = event.get("requestContext") or {}

    def where(outcome: str) -> dict[str, Any]:
        return fields(
            transport="websocket",
            outcome=outcome,
            request_id=context_.get("requestId"),
            connection_id=context_.get("connectionId"),
        )

    try:
        claims = verifier().verify(token)
    except KeyUnavailable:
        raise  # a server fault: API Gateway answers 500, and the client may retry
    except Unauthorized as exc:
        logger.info("refused: %s", exc.message, extra=where("unauthorized"))
        raise Exception("Unauthorized") from None  # the message is API Gateway's convention
    if not any(grant.scopes for grant in claims.grants):
        logger.info(
            "denied %s: the token grants nothing on any channel",
            claims.subject,
            extra=where("forbidden"),
        )
        return policy(claims.subject, "Deny", method_arn)
    result = {**policy(claims.subject, "Allow", method_arn), "context": claims.to_context()}
    if len(json.dumps(result)) > WEBSOCKET_AUTHORIZER_RESULT_MAX_BYTES:
        # API Gateway would answer 500 for an oversized result; a clear 403 is better.
        logger.warning(
            "denied %s: its claims do not fit the authorizer result",
            claims.subject,
            extra=where("claims_too_large"),
        )
        return policy(claims.subject, "Deny", method_arn)
    return result


install()  # tokens never reach a log line (eventlog.structured_logs)
