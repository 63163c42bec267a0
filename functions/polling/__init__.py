"""Polling: the event log over plain HTTP, one stateless request at a time.

Each request stands alone: the client carries its cursor (``after``) and the
server keeps nothing between requests, so any instance can answer any request
and a Lambda function behind an HTTP API scales it without coordination. The
price is latency (an event waits for the next poll) and requests that find
nothing. Long polling (``wait``) trades the empty requests for a function that
sits waiting, which on Lambda is billed by the second: see ``polling.long_poll``.

The function is a deliberate "Lambdalith": one FastAPI application behind Mangum
serves every route, so the same app runs under uvicorn in the local stack, the
OpenAPI schema comes for free, and there is one cold start to pay rather than one
per route. The cost is the import of FastAPI and pydantic at cold start, which
the WebSocket handlers avoid on purpose; PyJWT and boto3 are left to the first request
that needs them, and SnapStart (``-c pollingSnapStart=on``) can take the import out
of cold starts altogether, at a price (``infra.polling_api``).

Modules: ``config`` (routes and knobs, imported by the infrastructure too),
``problems`` (RFC 9457 error bodies), ``long_poll`` (waiting for events),
``app`` (the FastAPI application), ``handler`` (the Lambda entry point), ``snapstart``
(its hooks around a SnapStart snapshot).
"""
