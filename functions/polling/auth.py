"""The polling API's token check: a FastAPI dependency on publish and read.

``require(verifier, scope)`` is a dependency that reads the token (``Authorization:
Bearer``, else ``?token=``), verifies it, and checks the scope on the path's
channel, in that order (``eventlog.http_api.authorize``, which the SSE service's publish
and read use too): a caller without a valid token learns nothing else, not
even that its channel name is malformed. It runs before the endpoint parses the
query or reads the body, so a refused request costs no body read and no write.

Refusals are the problems of every refusal (``polling.problems``): 401
``unauthorized`` with ``WWW-Authenticate: Bearer``, 403 ``forbidden``. The two
security schemes are declared so that the OpenAPI schema documents both ways of
sending the token; the dependency itself does the parsing, to say precisely what
is wrong with a header. The dependency is a plain function, so FastAPI runs it in
the threadpool: verification may read Secrets Manager (once per container and
cache period), a blocking call.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security, params
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from auth.claims import Claims, Scope
from auth.config import TOKEN_QUERY_PARAMETER
from auth.verifier import Verifier
from eventlog.http_api import authorize

bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A JWT granting the channel's scope (subscribe to read, publish to append).",
    auto_error=False,
)
query_scheme = APIKeyQuery(
    name=TOKEN_QUERY_PARAMETER,
    scheme_name="queryToken",
    description="The same token, for clients that cannot set headers. Never logged.",
    auto_error=False,
)


def require(verifier: Verifier, scope: Scope) -> params.Depends:
    """A dependency that lets a request through only with ``scope`` on its channel."""

    def guard(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        _query: Annotated[str | None, Security(query_scheme)],
    ) -> Claims:
        return authorize(verifier, request, scope)

    dependency: params.Depends = Depends(guard)
    return dependency
