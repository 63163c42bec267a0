"""Auth for every transport: one token, one verifier, the same answers everywhere.

A token is a signed JWT whose claims say who the caller is and what it may do::

    {"sub": "alice", "exp": 1795000000,
     "channels": [{"pattern": "news", "scopes": ["subscribe"]},
                  {"pattern": "chat.*", "scopes": ["subscribe", "publish"]}]}

``channels`` is a list of grants: a channel name, or a prefix ending in ``*``
(``*`` alone is every channel), with the scopes it grants: ``subscribe`` (read:
polling GET, an SSE stream, a WebSocket ``subscribe``) and ``publish`` (append). A
channel is allowed a scope if any grant matches it and lists that scope.

Where each transport checks it (``docs/PROTOCOL.md`` has the wire details):

- polling: a FastAPI dependency before the request is parsed (``polling.auth``);
- SSE: the stream's gate, before the stream opens; the stream ends with ``event:
  expired`` when the token does (``sse_service.app``);
- WebSocket: a Lambda REQUEST authorizer on ``$connect`` verifies the token and
  returns its claims as the authorizer context; every ``subscribe`` and
  ``publish`` is checked against them, without verifying anything again
  (``websocket_api.authorizer``, ``websocket_api.routes``).

Modules: ``config`` (modes, environment variables, defaults), ``claims`` (grants and
matching, pure, no JWT library: the WebSocket route handlers import only this),
``verifier`` (signature, expiry and claims, with PyJWT), ``tokens`` (issuing
tokens signed with the shared secret, for a backend and for development).

Why HS256 with a generated secret by default: the template deploys with no
identity provider to set up, the secret never leaves Secrets Manager except into
the functions that verify and whatever backend of yours mints tokens, and
verification is a local HMAC with no network call. The price is that whoever can
verify can also mint. With an identity provider (Cognito, Auth0, ...) set
``AUTH_MODE=jwks``: tokens are then verified with the provider's public keys and
nothing here can mint one.
"""
