"""The Server-Sent Events transport: a container service that holds open streams.

``app`` (FastAPI + sse-starlette: routes, limits, shutdown), ``hub`` (one reader of the
log per channel, shared by its streams), ``settings`` (the knobs), ``problems`` (RFC 9457
refusals), ``__main__`` (uvicorn as the container runs it) and ``healthcheck`` (the
container's health probe).
"""
