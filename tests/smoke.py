"""``make smoke``: the end-to-end suite against the stack an endpoints file describes.

    make smoke                               # .local/deployed-outputs.json (make deploy)
    make smoke OUTPUTS=.local/outputs.json   # the running `make dev`

Against a deployment, the suite needs a token that may do everything: ``E2E_TOKEN``
if set, else a 15-minute one minted here from the deployment's secret (the
``AuthSecretArn`` output) with the caller's AWS credentials, as a backend would.
Against the local stack the suite fetches development tokens itself. A deployment
with ``-c auth=jwks`` has no secret: pass a token from the identity provider in
``E2E_TOKEN``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from auth.claims import parse_grants
from auth.tokens import issue_token
from client.cli import read_deployed_secret
from eventlog import endpoints

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TOKEN_TTL_SECONDS = 15 * 60


def smoke_token(outputs: dict[str, dict[str, str]]) -> str | None:
    """A token for every channel and scope, signed with the deployment's secret, if it has one."""
    for stack_outputs in outputs.values():
        secret_arn = stack_outputs.get(endpoints.AUTH_SECRET_ARN)
        if secret_arn:
            issued = issue_token(
                secret=read_deployed_secret(secret_arn),
                subject="smoke",
                grants=parse_grants([{"pattern": "*", "scopes": ["subscribe", "publish"]}]),
                ttl_seconds=SMOKE_TOKEN_TTL_SECONDS,
            )
            return issued.token
    return None


def main(argv: list[str]) -> int:
    outputs_file = Path(argv[0] if argv else ".local/deployed-outputs.json")
    if not outputs_file.is_file():
        print(
            f"smoke: no endpoints file at {outputs_file}: `make deploy` writes one, `make dev` "
            "writes .local/outputs.json",
            file=sys.stderr,
        )
        return 2
    outputs = json.loads(outputs_file.read_text())
    environment = {**os.environ, "E2E_OUTPUTS_FILE": str(outputs_file.resolve())}
    if not environment.get("E2E_TOKEN"):
        try:
            minted = smoke_token(outputs)
        except ValueError as exc:
            print(f"smoke: {exc}", file=sys.stderr)
            return 2
        if minted:
            environment["E2E_TOKEN"] = minted
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_e2e.py"]
    return subprocess.run(command, cwd=ROOT, env=environment, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
