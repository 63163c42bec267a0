"""The local stack's development secret: ``.local/dev-secret``, generated once, mode 0600.

Kept across restarts, so tokens issued before a restart still work after it; delete
the file to revoke them all. No web framework here: ``python -m client token`` reads it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from auth.config import MIN_SECRET_BYTES
from auth.tokens import generate_secret

logger = logging.getLogger("local")

DEV_SECRET_FILE = Path(".local/dev-secret")


def load_or_create_dev_secret(path: Path = DEV_SECRET_FILE) -> str:
    """The development secret at ``path``; a new random one (mode 0600) if there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate_secret() + "\n")
        logger.info("generated a development secret in %s", path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)
        logger.warning("%s was readable by others; it is now 0600", path)
    return read_dev_secret(path)


def read_dev_secret(path: Path = DEV_SECRET_FILE) -> str:
    """The development secret; ``FileNotFoundError`` says how to make one."""
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no development secret at {path}: start the local stack once (`make dev`)"
        ) from None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{path} holds no usable secret: delete it and restart `make dev`")
    return secret
