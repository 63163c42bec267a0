"""The polling function's SnapStart hooks, and what its init leaves for the first request."""

from __future__ import annotations

import importlib
import random
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from polling import snapstart


def test_environments_restored_from_one_snapshot_draw_different_numbers() -> None:
    snapshot = random.getstate()
    draws = []
    for _environment in range(2):
        random.setstate(snapshot)  # what every restore resumes from
        snapstart.reseed()
        draws.append(random.random())

    assert draws[0] != draws[1]


def test_the_hooks_are_registered_with_the_lambda_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered: dict[str, list[Callable[..., Any]]] = {"before": [], "after": []}
    runtime = types.ModuleType("snapshot_restore_py")
    runtime.register_before_snapshot = registered["before"].append  # type: ignore[attr-defined]
    runtime.register_after_restore = registered["after"].append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)

    assert snapstart.install() is True
    assert registered == {"before": [snapstart.prime], "after": [snapstart.reseed]}


def test_without_the_lambda_runtime_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails

    assert snapstart.install() is False


def test_prime_imports_every_module_the_first_request_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """That the init leaves them out is tested with the app's import (test_polling_app)."""
    imported: list[str] = []
    monkeypatch.setattr(importlib, "import_module", imported.append)

    snapstart.prime()

    assert imported == ["jwt", "boto3"]
