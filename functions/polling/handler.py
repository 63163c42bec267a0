"""The Lambda entry point: the polling app behind API Gateway's HTTP API (payload format 2.0).

Mangum turns each API Gateway event into one ASGI request to ``polling.app.app``.
Lifespan is off because the app has no startup work: the event log connects on
first use. Problem bodies are text, so they must not be base64-encoded. With SnapStart
the runtime also gets the snapshot hooks of ``polling.snapstart``.
"""

from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

from eventlog.structured_logs import install as _redact_tokens
from polling.app import app
from polling.snapstart import install as _install_snapshot_hooks

_redact_tokens()  # tokens never reach a log line (eventlog.structured_logs)
_install_snapshot_hooks()  # a fresh random state after each restore (polling.snapstart)

handler = Mangum(
    app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "application/problem+json"]
)
