"""Starting measured processes: each a fresh interpreter with the environment it is given, its
output (handler logs, EMF, warnings) appended to the bench log, its figures read from a file."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks.lambda_env import REPO_ROOT

# Only `sys` and `time` are loaded before the clock starts (both are loaded at start-up anyway).
_IMPORT_PROBE = """import sys, time
started = time.perf_counter()
import {module}
elapsed = time.perf_counter() - started
open(sys.argv[1], "w").write(repr(elapsed * 1000))
"""


class ProbeFailed(RuntimeError):
    """A measured process failed; the bench log has its output."""


class Runner:
    def __init__(self, log: IO[str], workdir: Path) -> None:
        self.log = log
        self.workdir = workdir

    def _run(self, command: Sequence[str], env: Mapping[str, str], label: str) -> None:
        self.log.write(f"\n--- {label}\n")
        self.log.flush()
        completed = subprocess.run(
            command, cwd=REPO_ROOT, env=dict(env), stdout=self.log, stderr=self.log, check=False
        )
        if completed.returncode != 0:
            raise ProbeFailed(f"{label} exited with {completed.returncode}; see {self.log.name}")

    def result_path(self) -> Path:
        return self.workdir / f"{uuid.uuid4().hex}.json"

    def import_ms(self, module: str, env: Mapping[str, str]) -> float:
        """Milliseconds to `import module` in a fresh interpreter."""
        result = self.result_path()
        code = _IMPORT_PROBE.format(module=module)
        self._run([sys.executable, "-c", code, str(result)], env, f"import {module}")
        return float(result.read_text(encoding="utf-8"))

    def probe(self, what: str, args: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
        """`python -m benchmarks.probe what ...`: its result document."""
        result = self.result_path()
        command = [sys.executable, "-m", "benchmarks.probe", what, "--result", str(result), *args]
        self._run(command, env, f"probe {what} {' '.join(args)}")
        document: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
        return document


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of the per-pair ratios (each pair measured back to back, so a slow moment of the
    shared machine slows both sides of the pair)."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """`items` starting at `shift`: who goes first changes from one round to the next."""
    shift %= len(items)
    return [*items[shift:], *items[:shift]]
