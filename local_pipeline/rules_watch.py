"""`make run` says Ready only with reply rules the consumer can load.

The file is the consumer's (`REPLY_RULES_PATH`, else the shipped `reply_rules.json`), read with
the consumer's own loader. While it is broken, `make run` says what is wrong in one line (the
rule's name and the problem, no traceback) and watches the file; once it loads, it goes on. After
Ready it keeps watching, and says so when the file breaks or is fixed again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from functions.common.names import ENV_REPLY_RULES_PATH

POLL_SECONDS = 0.5


def rules_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The file the consumer will read (a relative path is taken from the current directory,
    as the consumer worker runs there too)."""
    from functions.consumer.wiring import DEFAULT_RULES_PATH

    return Path(environ.get(ENV_REPLY_RULES_PATH) or DEFAULT_RULES_PATH)


def rules_problem(path: Path) -> str | None:
    """What is wrong with the rules file, in one line; None when the consumer can load it."""
    from functions.domain.consumer.reply_rules import ReplyRulesError, load_rules

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{path} does not exist"
    except (OSError, UnicodeDecodeError) as error:
        return f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
    try:
        load_rules(text)
    except ReplyRulesError as error:
        return " ".join(f"{path}: {error}".split())
    return None


def describe(path: Path, problem: str | None, *, ready: bool) -> str:
    """The console line for a change of the rules file's health."""
    if problem is None:
        return f"reply rules OK again: {path}"
    if ready:
        return (
            f"the reply rules are broken: {problem} (the consumer fails every batch until the "
            "file is fixed; watching it)"
        )
    return f"not Ready: the reply rules are broken: {problem} (fix the file: it is watched)"


def _fingerprint(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class RulesWatch:
    """Checks the rules file, and re-checks it whenever its content changes.

    `report(problem)` is called with the one-line problem when the file is (or becomes) broken,
    and with None when it is fixed after having been broken.
    """

    def __init__(
        self,
        path: Path,
        report: Callable[[str | None], None],
        *,
        wait: Callable[[threading.Event, float], bool] | None = None,
    ) -> None:
        self.path = path
        self._report = report
        self._wait = wait or (lambda stop, seconds: stop.wait(seconds))
        self._seen = _fingerprint(path)
        self.problem = rules_problem(path)

    def wait_until_valid(self, stop: threading.Event) -> bool:
        """True once the file loads (at once if it does now); False if `stop` was set first."""
        if self.problem is not None:
            self._report(self.problem)
        while self.problem is not None:
            if self._wait(stop, POLL_SECONDS):
                return False
            self.check()
        return True

    def watch(self, stop: threading.Event) -> None:
        """Re-check on every change until `stop` is set (run it in a thread)."""
        while not self._wait(stop, POLL_SECONDS):
            self.check()

    def check(self) -> None:
        current = _fingerprint(self.path)
        if current == self._seen:
            return
        self._seen = current
        problem = rules_problem(self.path)
        if problem != self.problem:
            self._report(problem)
        self.problem = problem
