#!/usr/bin/env python3
"""The CDK app: the event log's stack, then one line per transport.

Deleting a transport is deleting its line here, ``infra/<transport>.py`` and
``functions/<transport>/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The runtime packages live in functions/; the infrastructure imports their facts.
sys.path.insert(0, str(Path(__file__).parent / "functions"))

import aws_cdk as cdk

from eventlog import endpoints
from infra.events_table import EventLogStack
from infra.polling_api import PollingStack
from infra.sse_service import SseStack
from infra.websocket_api import WebSocketStack


def main() -> None:
    app = cdk.App()
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    event_log = EventLogStack(app, endpoints.EVENT_LOG_STACK, env=env)
    PollingStack(app, endpoints.POLLING_STACK, env=env, events_table=event_log.table)
    WebSocketStack(app, endpoints.WEBSOCKET_STACK, env=env, events_table=event_log.table)
    SseStack(app, endpoints.SSE_STACK, env=env, events_table=event_log.table)
    app.synth()


if __name__ == "__main__":
    main()
