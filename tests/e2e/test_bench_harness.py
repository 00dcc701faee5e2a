"""`make bench`'s harness on a tiny run: every key of the performance issue comes out numeric,
and the terminal shows the table, never the measured handlers' logs. (Figures of a tiny run
mean nothing; nothing here looks at their size.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import KEYS_BY_PART, PARTS

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_quick_bench_writes_every_key_and_prints_only_the_table(tmp_path: Path) -> None:
    # pywa is the `bench` extra: `make test` may run without it
    parts = [p for p in PARTS if p != "pywa" or importlib.util.find_spec("pywa") is not None]
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", ",".join(parts)]
    run = subprocess.run(
        [*command, "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "bench.log").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    expected = [key for part in parts for key in KEYS_BY_PART[part]]
    for key in expected:
        assert isinstance(results[key], int | float), key
        assert f"| `{key}` |" in run.stdout
    assert results["e2e_lost"] == 0
    assert results["e2e_duplicates"] == 0
    # Tracing is Lambda's (active tracing records each invocation): the functions themselves
    # load no X-Ray SDK and send nothing to the daemon the harness provides.
    assert results["run"]["xray_datagrams"] == 0
    # The handlers' JSON logs and EMF went to the log, not to the terminal
    assert not [line for line in run.stdout.splitlines() if line.lstrip().startswith("{")]
    assert run.stderr == ""
    log = (tmp_path / "bench.log").read_text()
    assert '"_aws"' in log  # EMF
    assert '"level":"INFO"' in log
