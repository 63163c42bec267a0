#!/usr/bin/env python3
"""The CDK app: the event log's and auth's stacks, one line per transport, the edge, operations.

Deleting a transport is deleting its line here, ``infra/<transport>.py`` and
``functions/<transport>/``: the edge serves, and operations watches, whatever
transports the list holds.

References between the stacks are weak (``Fn::GetStackOutput``, not exports; set in
app_rules): see docs/ARCHITECTURE.md, "Stacks that can always be redeployed".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The runtime packages live in functions/; the infrastructure imports their facts.
sys.path.insert(0, str(Path(__file__).parent / "functions"))

import aws_cdk as cdk

from eventlog import endpoints
from infra import app_rules
from infra.auth import AuthConfig, AuthStack
from infra.edge import EdgeConfig, EdgeStack
from infra.events_table import EventLogStack
from infra.operations import OperationsStack
from infra.polling_api import PollingStack
from infra.sse_service import SseStack
from infra.websocket_api import WebSocketStack


def main() -> None:
    app = cdk.App()
    app_rules.apply(app)  # weak references between the stacks, and cdk-nag
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    event_log = EventLogStack(app, endpoints.EVENT_LOG_STACK, env=env)
    # Auth on by default (-c auth=jwks|off to change it): see infra/auth.py.
    auth = AuthStack(app, endpoints.AUTH_STACK, env=env, config=AuthConfig.from_context(app.node))
    table, verify = event_log.table, auth.auth
    transports: list[PollingStack | WebSocketStack | SseStack] = [
        PollingStack(app, endpoints.POLLING_STACK, env=env, events_table=table, auth=verify),
        WebSocketStack(app, endpoints.WEBSOCKET_STACK, env=env, events_table=table, auth=verify),
        SseStack(app, endpoints.SSE_STACK, env=env, events_table=table, auth=verify),
    ]
    EdgeStack(
        app,
        endpoints.EDGE_STACK,
        env=env,
        routes=[route for transport in transports for route in transport.edge_routes],
        endpoints_offered=[offer for transport in transports for offer in transport.edge_endpoints],
        config=EdgeConfig.from_context(app.node),
    )
    OperationsStack(
        app,
        endpoints.OPERATIONS_STACK,
        env=env,
        watched=[watch for transport in transports for watch in transport.watched],
        graphs=[graph for transport in transports for graph in transport.graphs],
    )
    app.synth()


if __name__ == "__main__":
    main()
