"""The consumer's reply rules, checked at synth with the consumer's own loader.

A rules file the consumer would refuse at its first message fails `make synth` / `make deploy`
instead, with one line naming the file, the rule and the problem. The file is given as a path
inside the repository: the same path inside the Lambda asset is what the deployed consumer reads
(REPLY_RULES_PATH), so what was checked is what runs.

This module is infra's one import of the consumer's rules loader.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from functions.domain.consumer.reply_rules import ReplyRulesError, load_rules
from infra.bundling import REPO_ROOT
from infra.constants import LAMBDA_TASK_ROOT


class ReplyRulesFileError(ValueError):
    """The reply rules file is missing, outside the repository, or refused by the loader."""


def repository_relative(path: str, repo_root: Path = REPO_ROOT) -> str:
    """`path` (relative to the repository root, or absolute inside it) as a POSIX relative path."""
    if not path:
        raise ReplyRulesFileError("no file given")
    root = repo_root.resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ReplyRulesFileError(f"{path} is outside the repository {root}")
    if not resolved.is_file():
        raise ReplyRulesFileError(f"{path} is not a file")
    return resolved.relative_to(root).as_posix()


def check_reply_rules(relative_path: str, repo_root: Path = REPO_ROOT) -> None:
    """Load the rules as the consumer would; ReplyRulesFileError says which rule is wrong how."""
    path = repo_root / relative_path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReplyRulesFileError(f"reply rules {relative_path}: cannot read it: {error}") from None
    try:
        load_rules(text)
    except ReplyRulesError as error:
        problem = " ".join(str(error).split())  # one line, whatever the loader's message
        raise ReplyRulesFileError(f"reply rules {relative_path}: {problem}") from None


def deployed_path(relative_path: str) -> str:
    """Where the consumer finds the file in Lambda (the asset keeps repository paths)."""
    return str(PurePosixPath(LAMBDA_TASK_ROOT) / relative_path)
