"""Which transports this checkout has: a transport is present when its runtime package is.

Removing a transport (README, "Make it yours") deletes its ``functions/<package>/``. The
local stack, the bench and the tests ask here instead of importing it, so the other
transports run on without it. Clients ask the endpoints file instead (an output key per
transport, ``eventlog.endpoints``): a deployment is not a checkout.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

Transport = Literal["polling", "sse", "websocket"]

PACKAGES: dict[Transport, str] = {
    "polling": "polling",
    "sse": "sse_service",
    "websocket": "websocket_api",
}
"""Each transport's package in ``functions/``."""


def present(transport: Transport) -> bool:
    """Whether ``transport``'s package can be imported here (without importing it)."""
    return importlib.util.find_spec(PACKAGES[transport]) is not None


def present_transports() -> tuple[Transport, ...]:
    return tuple(name for name in PACKAGES if present(name))


def absent_transports() -> tuple[Transport, ...]:
    return tuple(name for name in PACKAGES if not present(name))
