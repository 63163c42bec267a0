"""The Server-Sent Events transport: a container service that holds open streams.

``app`` (FastAPI: health, CORS, metrics, shutdown), ``stream`` (the stream route, a bare
ASGI handler: the gate, the cap, one task per stream), ``hub`` (one reader of the log per
channel, shared by its streams), ``broker`` and ``relay`` (the push backplane),
``settings`` (the knobs), ``__main__`` (uvicorn as the container runs it) and
``healthcheck`` (the container's health probe).
"""
