"""The polling function around a SnapStart snapshot (``-c pollingSnapStart=on``).

With SnapStart, Lambda runs the init (the imports and ``create_app``) once, when a
version is published, snapshots the memory, and resumes every new execution
environment from that one snapshot (docs.aws.amazon.com/lambda/latest/dg/snapstart.html).
Two consequences, one hook each:

- Whatever the init leaves in memory, every restored environment shares. The init opens
  no connection and reads no secret (the DynamoDB and Secrets Manager clients are made
  by the first request that needs one), so no socket or credential is snapshotted. But
  ``random`` seeds itself once, when imported: restored environments would draw the same
  numbers, botocore's retry jitter among them, so their retries would stay in step.
  ``reseed`` runs after every restore (docs.aws.amazon.com/lambda/latest/dg/
  snapstart-uniqueness.html). ``uuid4`` and ``secrets`` read ``os.urandom`` at every
  call: nothing to do for them.
- What the init leaves out, the first request imports: ``FIRST_USE_IMPORTS`` (imported on
  first use by ``auth.verifier``, ``auth.secret_cache`` and ``eventlog.log``, to keep them
  out of a cold start without SnapStart). ``prime`` imports them before the snapshot, so
  a restored environment has them; it creates no client, so nothing connects.

The hooks are registered with ``snapshot_restore_py``, which the Lambda Python runtimes
include (docs.aws.amazon.com/lambda/latest/dg/snapstart-runtime-hooks-python.html).
Anywhere else (tests, uvicorn) nothing is ever snapshotted and nothing is registered;
on Lambda without SnapStart the hooks are registered and never run.
"""

from __future__ import annotations

import importlib
import random

FIRST_USE_IMPORTS = ("jwt", "boto3")
"""Modules the request path imports on first use rather than at init."""


def prime() -> None:
    """Import what the first request would, so that the snapshot holds it."""
    for name in FIRST_USE_IMPORTS:
        importlib.import_module(name)


def reseed() -> None:
    """Give this environment its own random state (from ``os.urandom``)."""
    random.seed()


def install() -> bool:
    """Register ``prime`` and ``reseed`` with the Lambda runtime; False where there is none."""
    try:
        hooks = importlib.import_module("snapshot_restore_py")
    except ModuleNotFoundError:
        return False
    hooks.register_before_snapshot(prime)
    hooks.register_after_restore(reseed)
    return True
