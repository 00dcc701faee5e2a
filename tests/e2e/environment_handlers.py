"""Handlers for the execution-environment tests (imported inside each environment process)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

# Module-level state, as Powertools keeps: one per execution environment.
INVOCATIONS: list[str] = []

# An init phase that fails once this file exists (a broken deployment, for the tests).
_BROKEN_MARKER = os.environ.get("TEST_ENVIRONMENT_BROKEN_IF")
if _BROKEN_MARKER and Path(_BROKEN_MARKER).exists():
    raise RuntimeError("init failed on purpose")


def remember(event: dict[str, Any], context: Any) -> dict[str, Any]:
    INVOCATIONS.append(event["name"])
    return {"pid": os.getpid(), "seen": list(INVOCATIONS), "function": context.function_name}


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("fail"):
        raise KeyError("no such thing")
    return {"pid": os.getpid()}


def rendezvous(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Arrive, then wait (bounded) for `expected` arrivals: only concurrent invocations meet."""
    directory = Path(event["directory"])
    (directory / str(os.getpid())).touch()
    deadline = time.monotonic() + 20
    while len(list(directory.iterdir())) < event["expected"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"met": len(list(directory.iterdir())), "pid": os.getpid()}


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(event["seconds"])
    return {"pid": os.getpid()}


def variable(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"value": os.environ.get(event["name"])}
