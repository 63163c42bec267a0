"""The endpoints file of the wire contract: stack names and output keys, defined once.

``cdk deploy --outputs-file`` writes ``{"<StackName>": {"<OutputKey>": "<value>"}}``;
the local stack writes the same shape with the same names, so every client, test
and tool finds a deployed stack and the local one the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

EVENT_LOG_STACK = "RealtimeEventLog"
AUTH_STACK = "RealtimeAuth"
POLLING_STACK = "RealtimePolling"
WEBSOCKET_STACK = "RealtimeWebSocket"
SSE_STACK = "RealtimeSse"
EDGE_STACK = "RealtimeEdge"
OPERATIONS_STACK = "RealtimeOperations"

POLLING_API_URL = "PollingApiUrl"
WEBSOCKET_URL = "WebSocketUrl"
SSE_URL = "SseUrl"
DEMO_URL = "DemoUrl"

# Outputs for operators and for tests that look behind the transports.
EVENTS_TABLE_NAME = "EventsTableName"
CONNECTIONS_TABLE_NAME = "ConnectionsTableName"
LOCAL_DYNAMODB_ENDPOINT = "LocalDynamoDbEndpoint"
LOCAL_BROKER_URL = "LocalBrokerUrl"
"""Only the local stack writes this one: deployed tables are at the region's endpoint."""
LOCAL_DEV_TOKEN_URL = "LocalDevTokenUrl"  # noqa: S105 (an output key)
"""Only the local stack writes this one, and only with auth on: where development tokens
are issued (``POST``). A deployment issues no tokens: your backend or identity provider does."""
AUTH_SECRET_ARN = "AuthSecretArn"  # noqa: S105 (an output key)
"""The deployed HS256 secret, for a backend that issues tokens (the ARN, never the value)."""

LOCAL_OUTPUTS_FILE = Path(".local/outputs.json")


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    polling_api_url: str | None = None
    websocket_url: str | None = None
    sse_url: str | None = None
    demo_url: str | None = None
    dev_token_url: str | None = None

    @property
    def log_api_url(self) -> str | None:
        """Where the log's HTTP API is (publish, page read): the polling API, else the SSE
        service, which serves the same contract (``eventlog.http_api``); None without both."""
        return self.polling_api_url or self.sse_url

    @classmethod
    def load(cls, path: Path | str = LOCAL_OUTPUTS_FILE) -> Endpoints:
        """Read an outputs file; an output may sit in any stack, as long as its key matches."""
        try:
            stacks = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no endpoints file at {path}: start the local stack with `make dev`, "
                "or deploy with `make deploy` and pass its outputs file"
            ) from None
        return cls.from_outputs(stacks)

    @classmethod
    def from_outputs(cls, stacks: dict[str, dict[str, str]]) -> Endpoints:
        outputs: dict[str, str] = {}
        for stack_outputs in stacks.values():
            outputs.update(stack_outputs)
        return cls(
            polling_api_url=outputs.get(POLLING_API_URL),
            websocket_url=outputs.get(WEBSOCKET_URL),
            sse_url=outputs.get(SSE_URL),
            demo_url=outputs.get(DEMO_URL),
            dev_token_url=outputs.get(LOCAL_DEV_TOKEN_URL),
        )
