"""The container's health probe: ``python -m sse_service.healthcheck`` exits 0 on a 200.

The image has no curl; the Dockerfile's HEALTHCHECK and the ECS task definition's
health check both run this one command.
"""

from __future__ import annotations

import sys
import urllib.request

from sse_service.settings import listen_port

COMMAND = ["python", "-m", "sse_service.healthcheck"]


def main() -> int:
    url = f"http://127.0.0.1:{listen_port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
