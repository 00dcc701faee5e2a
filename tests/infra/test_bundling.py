"""The code asset both functions run from: built with pip for Linux arm64, no Docker."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.bundling import (
    REPO_ROOT,
    LocalPipBundling,
    pip_command,
    runtime_requirements,
    source_fingerprint,
)
from infra.constants import LAMBDA_PYTHON_VERSION, LAMBDA_WHEEL_PLATFORM
from infra.runtime_python import runtime_interpreter

pytestmark = pytest.mark.infra


def test_pip_targets_the_lambda_platform_and_the_runtime_python(tmp_path: Path) -> None:
    command = pip_command(str(tmp_path))
    joined = " ".join(command)
    assert f"--platform {LAMBDA_WHEEL_PLATFORM}" in joined
    assert f"--python-version {LAMBDA_PYTHON_VERSION}" in joined
    assert "--only-binary=:all:" in command
    assert f"--target {tmp_path}" in joined
    assert f"--constraint {REPO_ROOT / 'constraints.txt'}" in joined
    assert command[-len(runtime_requirements()) :] == runtime_requirements()


def test_runtime_requirements_are_the_exact_pins_of_pyproject() -> None:
    requirements = runtime_requirements()
    names = {r.split("==")[0].split("[")[0] for r in requirements}
    assert {"aws-lambda-powertools", "boto3", "urllib3"} <= names
    assert all("==" in r for r in requirements)


def _copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(
        REPO_ROOT / "functions", root / "functions", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO_ROOT / name, root / name)
    return root


def test_fingerprint_follows_sources_but_not_bytecode(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    before = source_fingerprint(root)
    cache = root / "functions" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "x.cpython-311.pyc").write_bytes(b"\0")
    assert source_fingerprint(root) == before
    (root / "functions" / "consumer" / "reply_rules.json").write_text("{}")
    assert source_fingerprint(root) != before


def test_fingerprint_follows_an_extra_file_outside_functions(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    (root / "config").mkdir()
    rules = root / "config" / "rules.json"
    rules.write_text('{"rules": []}')
    without = source_fingerprint(root)
    with_rules = source_fingerprint(root, ["config/rules.json"])
    assert with_rules != without
    rules.write_text('{"rules": [], "default": null}')
    assert source_fingerprint(root, ["config/rules.json"]) != with_rules
    # a file under functions/ is already part of the asset: naming it changes nothing
    assert source_fingerprint(root, ["functions/consumer/reply_rules.json"]) == without


def test_local_bundling_builds_an_arm64_asset_with_the_pinned_dependencies(
    tmp_path: Path,
) -> None:
    # Given a copy of the repository with some bytecode lying around
    root = _copy_repo(tmp_path)
    (root / "functions" / "__pycache__").mkdir(exist_ok=True)
    (root / "functions" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"\0")
    # and a reply rules file kept outside functions/ (context replyRulesFile)
    (root / "config").mkdir()
    (root / "config" / "rules.json").write_text('{"rules": []}')
    out = tmp_path / "asset"
    out.mkdir()

    interpreter = runtime_interpreter()
    if interpreter is None:
        pytest.skip(f"no Python {LAMBDA_PYTHON_VERSION} here to compile the bundle with")

    # When CDK's local bundling hook runs (pip downloads or reuses its cache)
    bundling = LocalPipBundling(root, ["config/rules.json"], interpreter)
    bundled = bundling.try_bundle(str(out), None)  # type: ignore[arg-type]

    # Then the asset has the handlers, their data files, and the pinned dependencies
    assert bundled is True
    assert (out / "functions" / "ingest" / "app.py").is_file()
    assert (out / "functions" / "consumer" / "reply_rules.json").is_file()
    # compiled by the runtime's own Python, nothing else's (the stale pyc stayed behind)
    tag = f"cpython-{LAMBDA_PYTHON_VERSION.replace('.', '')}"
    pycs = list(out.rglob("*.pyc"))
    assert pycs
    assert all(f".{tag}." in pyc.name for pyc in pycs), {p.name for p in pycs if tag not in p.name}
    for module in (out / "functions").rglob("*.py"):
        assert (module.parent / "__pycache__" / f"{module.stem}.{tag}.pyc").is_file(), module
    # the rules file lies at its repository path, which is what REPLY_RULES_PATH names
    assert (out / "config" / "rules.json").read_text() == '{"rules": []}'
    for requirement in runtime_requirements(root):
        name, version = requirement.split("[")[0].split("==")[0], requirement.split("==")[1]
        dist = name.replace("-", "_")
        assert list(out.glob(f"{dist}-{version}.dist-info")), requirement
    # and any compiled extension is a Linux arm64 build for the runtime's Python
    arm64 = f"{tag}-aarch64-linux-gnu"
    extensions = list(out.rglob("*.so"))
    assert all(arm64 in so.name or "abi3" in so.name for so in extensions), extensions
    # and no test code rides along
    assert not (out / "tests").exists()
