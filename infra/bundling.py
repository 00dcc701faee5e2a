"""The one code asset both functions run from, built on this machine without Docker.

The asset is the repository's `functions/` package (every file in it, `.py` or not, without the
local bytecode caches) plus the runtime dependencies pinned in `pyproject.toml`, installed as
Linux arm64 wheels for the Lambda runtime's Python version by `pip install --platform ...
--only-binary=:all:` (transitive versions pinned by `constraints.txt`), then compiled to bytecode
by an interpreter of that same version (`infra/runtime_python.py`). pip's own download cache makes
a second build sub-second; CDK skips bundling entirely when `cdk.out/` already holds an asset with
the same hash, which covers the source files, the pins, the target platform and the bytecode.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.constants import FUNCTIONS_PACKAGE_DIR, LAMBDA_PYTHON_VERSION, LAMBDA_WHEEL_PLATFORM
from infra.runtime_python import runtime_interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
# What never belongs in the asset, wherever it sits under `functions/`.
EXCLUDED_PATTERNS = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache")
# CDK insists on an image for the Docker fallback; it is never pulled because local bundling
# always answers (or raises), and this machine has no Docker engine anyway.
_UNUSED_IMAGE = f"public.ecr.aws/sam/build-python{LAMBDA_PYTHON_VERSION}:latest"


class BundlingError(RuntimeError):
    """pip could not install the pinned runtime dependencies for the Lambda platform."""


def runtime_requirements(repo_root: Path = REPO_ROOT) -> list[str]:
    """The `[project] dependencies` of pyproject.toml: exactly what the functions import."""
    with (repo_root / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    return [str(requirement) for requirement in project["dependencies"]]


def pip_command(output_dir: str, repo_root: Path = REPO_ROOT) -> list[str]:
    """The pip invocation that fills `output_dir` with Linux arm64 wheels for the runtime."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        LAMBDA_WHEEL_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        output_dir,
    ]
    constraints = repo_root / "constraints.txt"
    if constraints.is_file():
        command += ["--constraint", str(constraints)]
    return [*command, *runtime_requirements(repo_root)]


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """`ILocalBundling` that installs the dependencies with pip and copies `functions/`."""

    def __init__(
        self,
        repo_root: Path = REPO_ROOT,
        extra_files: Sequence[str] = (),
        interpreter: str | None = None,
    ) -> None:
        self._repo_root = repo_root
        self._extra_files = _outside_the_package(extra_files)
        self._interpreter = interpreter

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            pip_command(output_dir, self._repo_root),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BundlingError(
                "pip could not install the Lambda dependencies "
                f"(exit {result.returncode}):\n{result.stderr.strip()}"
            )
        shutil.copytree(
            self._repo_root / FUNCTIONS_PACKAGE_DIR,
            Path(output_dir) / FUNCTIONS_PACKAGE_DIR,
            ignore=shutil.ignore_patterns(*EXCLUDED_PATTERNS),
            dirs_exist_ok=True,
        )
        for relative in self._extra_files:
            target = Path(output_dir) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._repo_root / relative, target)
        compile_bytecode(output_dir, self._interpreter)
        return True


def compile_bytecode(output_dir: str, interpreter: str | None) -> bool:
    """Compile every module of the asset with the runtime's own Python, so a cold start loads
    bytecode instead of compiling botocore and Powertools into memory (`/var/task` is read-only:
    nothing compiled there is ever kept). `unchecked-hash` pycs are never revalidated against
    their sources, which cannot change in a deployed function. Without that interpreter the
    asset still works, only its cold starts are slower; synth says so."""
    if interpreter is None:
        sys.stderr.write(
            f"warning: no Python {LAMBDA_PYTHON_VERSION} on this machine: the Lambda code ships "
            "without bytecode, so each cold start compiles it (about twice as slow to import)\n"
        )
        return False
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            interpreter,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            output_dir,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BundlingError(f"compileall failed (exit {result.returncode}):\n{result.stdout}")
    return True


def _outside_the_package(extra_files: Sequence[str]) -> list[str]:
    """The extra files `functions/` does not already bring along (repository-relative)."""
    return sorted({f for f in extra_files if not f.startswith(f"{FUNCTIONS_PACKAGE_DIR}/")})


def source_fingerprint(
    repo_root: Path = REPO_ROOT, extra_files: Sequence[str] = (), *, with_bytecode: bool = False
) -> str:
    """Hash of everything that decides the asset's content: sources, pins, target platform and
    whether it carries bytecode."""
    digest = hashlib.sha256(b"bytecode\0" if with_bytecode else b"")
    for extra in _outside_the_package(extra_files):
        digest.update(extra.encode() + b"\0" + (repo_root / extra).read_bytes() + b"\0")
    for item in (LAMBDA_PYTHON_VERSION, LAMBDA_WHEEL_PLATFORM, *runtime_requirements(repo_root)):
        digest.update(item.encode() + b"\0")
    constraints = repo_root / "constraints.txt"
    if constraints.is_file():
        digest.update(constraints.read_bytes())
    package = repo_root / FUNCTIONS_PACKAGE_DIR
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if not path.is_file() or _excluded(relative):
            continue
        digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _excluded(relative: Path) -> bool:
    return any(
        part in {"__pycache__", ".mypy_cache", ".pytest_cache"} for part in relative.parts
    ) or relative.suffix in {".pyc", ".pyo"}


def bundled_code(repo_root: Path = REPO_ROOT, extra_files: Sequence[str] = ()) -> lambda_.Code:
    """The functions' shared code asset, bundled locally (see the module docstring), plus the
    `extra_files` (repository-relative) at the same relative paths, e.g. a reply rules file."""
    interpreter = runtime_interpreter()
    return lambda_.Code.from_asset(
        str(repo_root / FUNCTIONS_PACKAGE_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=source_fingerprint(
            repo_root, extra_files, with_bytecode=interpreter is not None
        ),
        bundling=BundlingOptions(
            image=DockerImage.from_registry(_UNUSED_IMAGE),
            # jsii calls try_bundle(output_dir, options) positionally; its generated Protocol
            # spells the options out as keywords, which no Python class can match both ways.
            local=cast(ILocalBundling, LocalPipBundling(repo_root, extra_files, interpreter)),
        ),
    )
