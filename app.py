#!/usr/bin/env python3
"""The CDK app: the event log's and auth's stacks, the transports, the edge, operations.

Removing a transport (README, "Make it yours") is deleting the two lines here that name
its stack (its import and its entry in ``transports``), ``infra/<transport>.py``,
``functions/<transport>/`` and ``tests/<transport>/`` (for SSE, ``infra/sse_broker.py``
too). The edge serves, and operations watches, whatever transports the list holds; the
others publish and backfill without it (docs/ARCHITECTURE.md, "Publish and backfill
without polling").

References between the stacks are weak (``Fn::GetStackOutput``, not exports; set in
app_rules): see docs/ARCHITECTURE.md, "Stacks that can always be redeployed".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

# The runtime packages live in functions/; the infrastructure imports their facts.
sys.path.insert(0, str(Path(__file__).parent / "functions"))

import aws_cdk as cdk

from eventlog import endpoints
from infra import app_rules
from infra.auth import AuthConfig, AuthStack
from infra.edge import EdgeConfig, EdgeEndpoint, EdgeRoute, EdgeStack
from infra.events_table import EventLogStack
from infra.operations import Graph, OperationsStack, Watched
from infra.polling_api import PollingStack
from infra.sse_service import SseStack
from infra.websocket_api import WebSocketStack


class Transport(Protocol):
    """What the edge and operations take from a transport's stack."""

    @property
    def edge_routes(self) -> Sequence[EdgeRoute]: ...
    @property
    def edge_endpoints(self) -> Sequence[EdgeEndpoint]: ...
    @property
    def watched(self) -> Sequence[Watched]: ...
    @property
    def graphs(self) -> Sequence[Graph]: ...


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
    transports: list[Transport] = [
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
