"""What a deploy needs from the target account that a synth cannot know.

``make deploy`` runs ``python -m infra.preflight <the CONTEXT pairs>`` before
``cdk deploy``, with the same credentials. Today it checks one thing: that the
account's Lambda concurrency quota leaves room for the polling function's reserve.
Lambda refuses a reserve that leaves fewer than 100 executions unreserved, and new
accounts start with a quota far below the default 1,000 ("New AWS accounts have
reduced concurrency and memory quotas", docs.aws.amazon.com/lambda/latest/dg/
gettingstarted-limits.html): there the first deploy would fail half-way, at the
polling stack, with CloudFormation's less helpful words. A checkout without the polling
transport (``infra/polling_api.py`` removed) has nothing to check.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def context_of(pairs: list[str], cdk_json: Path = CDK_JSON) -> dict[str, Any]:
    """cdk.json's context, overridden by ``key=value`` pairs, as the CDK CLI merges them."""
    context: dict[str, Any] = dict(json.loads(cdk_json.read_text()).get("context", {}))
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise ValueError(f"context must be key=value, got {pair!r}")
        context[key] = value
    return context


def check_concurrency(context: dict[str, Any], lambda_client: Any) -> str | None:
    """Why the account cannot take the polling reserve, or None when it can."""
    from infra.polling_api import (
        LAMBDA_MIN_UNRESERVED,
        RESERVED_CONCURRENCY_CONTEXT,
        reserved_concurrency_from,
    )

    reserve = reserved_concurrency_from(context.get(RESERVED_CONCURRENCY_CONTEXT))
    if reserve is None:
        return None
    limit = int(lambda_client.get_account_settings()["AccountLimit"]["ConcurrentExecutions"])
    if limit - reserve >= LAMBDA_MIN_UNRESERVED:
        return None
    return (
        f"this account allows {limit} concurrent Lambda executions; reserving {reserve} for the "
        f"polling function would leave fewer than the {LAMBDA_MIN_UNRESERVED} Lambda keeps "
        f'unreserved. Deploy with CONTEXT="{RESERVED_CONCURRENCY_CONTEXT}=none" (or a number '
        f"up to {max(limit - LAMBDA_MIN_UNRESERVED, 0)}), or ask AWS for a higher quota."
    )


def main(argv: list[str]) -> int:
    if importlib.util.find_spec("infra.polling_api") is None:
        return 0  # the polling transport is removed: no reserve to make room for
    import boto3
    import botocore.exceptions

    try:
        problem = check_concurrency(context_of(argv), boto3.client("lambda"))
    except ValueError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    except botocore.exceptions.NoCredentialsError:
        print(
            "preflight: no AWS credentials: run `aws configure` or set AWS_PROFILE, then "
            "`make deploy` again",
            file=sys.stderr,
        )
        return 2
    if problem:
        print(f"preflight: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
