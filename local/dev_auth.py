"""Development auth for the local stack: a generated secret, and tokens on request.

The local stack runs with auth on, like a deployment, so what works locally works
deployed. It signs with a development secret, generated on the first start and kept
in ``.local/dev-secret`` (mode 0600, never committed: ``.local/`` is ignored), so
tokens issued before a restart still work after it. Delete the file to revoke them all.

Tokens come from two places, both local only:

- ``POST /dev/token`` on the demo server (its URL is in the endpoints file under
  ``LocalDevTokenUrl``, which only the local stack writes): the demo page and the
  CLI ask it. The body is optional JSON: ``{"sub": "dev", "channels": [<grant>...],
  "ttl": 3600}`` (default: every scope on every channel, for an hour). It answers
  only requests addressed to 127.0.0.1 or localhost (a DNS-rebinding page cannot use
  it) with a JSON body (a cross-origin page cannot send one without a CORS preflight,
  which this server never approves).
- ``python -m client token`` reads the secret file itself (``local.dev_secret``), so it
  works while the stack is down.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.claims import InvalidClaims, all_channels, parse_grants
from auth.config import DEFAULT_TOKEN_TTL_SECONDS
from auth.tokens import issue_token, parse_ttl

DEV_TOKEN_PATH = "/dev/token"  # noqa: S105 (a path)
DEV_SUBJECT = "dev"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"status": status, "detail": detail}, status_code=status)


def _token_request(body: Any) -> tuple[str, Any, int]:
    """``(subject, grants, ttl)`` from a request body, or ``ValueError``."""
    if not isinstance(body, dict) or set(body) - {"sub", "channels", "ttl"}:
        raise ValueError('the body must be an object with optional "sub", "channels" and "ttl"')
    subject = body.get("sub", DEV_SUBJECT)
    if not isinstance(subject, str) or not subject:
        raise ValueError('"sub" must be a non-empty string')
    grants = parse_grants(body["channels"]) if "channels" in body else all_channels()
    ttl = body.get("ttl", DEFAULT_TOKEN_TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int | str):
        raise ValueError('"ttl" must be seconds, or a string like "15m" or "1h"')
    return subject, grants, parse_ttl(str(ttl))


def dev_token_route(*, secret: str) -> Route:
    """``POST /dev/token``: a token signed with the development secret."""

    async def issue(request: Request) -> Response:
        host = (request.url.hostname or "").lower()
        if host not in LOCAL_HOSTS:
            return _refuse(403, "development tokens are issued to 127.0.0.1 and localhost only")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        # No body at all is the documented "everything by default"; a body must be JSON
        # (which also makes a browser ask first, by a preflight, from another origin).
        if (body or media_type) and media_type != "application/json":
            return _refuse(415, "send a JSON body (it may be {}), or none")
        try:
            subject, grants, ttl = _token_request(json.loads(body or b"{}"))
        except (ValueError, InvalidClaims) as exc:  # a JSONDecodeError is a ValueError
            return _refuse(400, str(exc))
        except RecursionError:
            return _refuse(400, "the body is nested too deeply")
        issued = issue_token(secret=secret, subject=subject, grants=grants, ttl_seconds=ttl)
        return JSONResponse(
            {
                "token": issued.token,
                "token_type": "Bearer",
                "expires_at": issued.expires_at,
                "expires_in": ttl,
            },
            headers={"Cache-Control": "no-store"},
        )

    return Route(DEV_TOKEN_PATH, issue, methods=["POST"])
