"""The polling transport's routes and knobs, defined once.

The app serves exactly ``ROUTES`` and the HTTP API routes exactly ``ROUTES``, and
both configure CORS from the constants below, so the infrastructure imports this
module: it must stay free of web-framework imports. Limits shared with the other
transports live in ``eventlog.config``, the events path and body limit among them (the SSE
service serves the same publish and page read: ``eventlog.http_api``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from eventlog.config import (
    EVENTS_CORS_ALLOW_HEADERS,
    EVENTS_CORS_ALLOW_METHODS,
    EVENTS_CORS_EXPOSE_HEADERS,
    EVENTS_PATH,
)

# --- Routes -----------------------------------------------------------------------------------

HEALTH_PATH = "/healthz"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"

ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", EVENTS_PATH),
    ("GET", EVENTS_PATH),
    ("GET", HEALTH_PATH),
    ("GET", OPENAPI_PATH),
    ("GET", DOCS_PATH),
)
"""(method, path) of every route; API Gateway answers anything else with 404 itself."""

# --- CORS (the demo page may be served from another origin) ---------------------------------

DEFAULT_CORS_ALLOW_ORIGINS: tuple[str, ...] = ("*",)
"""Any origin by default: tokens travel in the ``Authorization`` header, never in cookies,
so a foreign page gains nothing from reading a response it could not authorize itself."""

CORS_ALLOW_METHODS = EVENTS_CORS_ALLOW_METHODS
CORS_ALLOW_HEADERS = EVENTS_CORS_ALLOW_HEADERS
CORS_EXPOSE_HEADERS = EVENTS_CORS_EXPOSE_HEADERS
CORS_MAX_AGE_SECONDS = 600
"""How long a browser may cache a preflight answer."""


@dataclass(frozen=True, kw_only=True)
class PollingSettings:
    """What the app reads from the environment: ``CORS_ALLOW_ORIGINS``, comma-separated."""

    cors_allow_origins: tuple[str, ...] = DEFAULT_CORS_ALLOW_ORIGINS

    @classmethod
    def from_env(cls) -> PollingSettings:
        raw = os.environ.get("CORS_ALLOW_ORIGINS", "")
        origins = tuple(origin.strip() for origin in raw.split(",") if origin.strip())
        return cls(cors_allow_origins=origins or DEFAULT_CORS_ALLOW_ORIGINS)
