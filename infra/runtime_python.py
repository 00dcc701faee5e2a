"""Finds an interpreter of the Lambda runtime's Python version on this machine.

The bundle's bytecode must be compiled by the runtime's own version (a `.pyc` is tied to it), and
the functions' tests run on it too. pyenv's shims refuse a version that is installed but not
selected, so its versions folder is searched as well.

    python -m infra.runtime_python     prints the path, or nothing when there is none
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from infra.constants import LAMBDA_PYTHON_VERSION


def runtime_interpreter(version: str = LAMBDA_PYTHON_VERSION) -> str | None:
    """The path of a working `python<version>`, or None."""
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(
            glob.glob(
                os.path.join(pyenv_root, "versions", f"{version}*", "bin", f"python{version}")
            )
        ),
    ]
    for candidate in candidates:
        if candidate and _reports(candidate, version):
            return candidate
    return None


def _reports(interpreter: str, version: str) -> bool:
    try:
        answer = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return answer.returncode == 0 and answer.stdout.strip() == version


if __name__ == "__main__":
    print(runtime_interpreter() or "")
