"""The reply handler named by `-c replyHandler=module.path:function`, found at synth.

Synth checks, without importing (user code may open connections or read secrets at import),
that the module is a file inside this repository and that it defines the function, and says
which files the Lambda asset must carry: the module's top-level package (every file in it, so
data files beside the code come along) or, for a module at the repository root, that one file.
Code under `functions/` is in the asset already.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from functions.common.settings import split_handler_spec
from infra.bundling import EXCLUDED_PATTERNS, REPO_ROOT
from infra.constants import FUNCTIONS_PACKAGE_DIR

_EXCLUDED_PARTS = frozenset(p for p in EXCLUDED_PATTERNS if "*" not in p)
_EXCLUDED_SUFFIXES = frozenset(p[1:] for p in EXCLUDED_PATTERNS if p.startswith("*"))


class ReplyHandlerSpecError(ValueError):
    """The reply handler cannot be found, or does not define the function; one line."""


@dataclass(frozen=True, slots=True)
class HandlerSource:
    spec: str
    module_file: str  # repository-relative
    files: tuple[str, ...]  # repository-relative, what the asset must carry besides functions/


def locate_handler(spec: str, repo_root: Path = REPO_ROOT) -> HandlerSource:
    try:
        module, function = split_handler_spec(spec.strip())
    except ValueError:
        raise ReplyHandlerSpecError(
            f"reply handler {spec!r}: expected module.path:function (e.g. examples.echo:handle)"
        ) from None
    parts = module.split(".")
    root = repo_root.resolve()
    candidates = [Path(*parts).with_suffix(".py"), Path(*parts, "__init__.py")]
    found = next((c for c in candidates if (root / c).is_file()), None)
    if found is None:
        raise ReplyHandlerSpecError(
            f"reply handler {spec}: no {candidates[0].as_posix()} or "
            f"{candidates[1].as_posix()} in this repository"
        )
    _check_defines(root / found, function, spec)
    return HandlerSource(
        spec=spec.strip(), module_file=found.as_posix(), files=_files_to_ship(root, parts[0])
    )


def _check_defines(path: Path, function: str, spec: str) -> None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as error:
        problem = " ".join(str(error).split())
        raise ReplyHandlerSpecError(f"reply handler {spec}: cannot read it: {problem}") from None
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name == function:
            raise ReplyHandlerSpecError(
                f"reply handler {spec}: {function} is `async def`; the consumer calls a plain "
                "function (run your coroutine with asyncio.run inside it)"
            )
        if _binds(node, function):
            return
    raise ReplyHandlerSpecError(
        f"reply handler {spec}: {path.name} defines no {function} at its top level"
    )


def _binds(node: ast.stmt, name: str) -> bool:
    """A top-level `def name`, `name = …`, or `from … import … as name`."""
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    if isinstance(node, ast.ImportFrom | ast.Import):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    return False


def _files_to_ship(root: Path, top_level: str) -> tuple[str, ...]:
    if top_level == FUNCTIONS_PACKAGE_DIR:
        return ()  # the asset is functions/ already
    package = root / top_level
    if not package.is_dir():
        return (f"{top_level}.py",)
    return tuple(
        path.relative_to(root).as_posix()
        for path in sorted(package.rglob("*"))
        if path.is_file()
        and not _EXCLUDED_PARTS & set(path.relative_to(root).parts)
        and path.suffix not in _EXCLUDED_SUFFIXES
    )
