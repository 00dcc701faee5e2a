"""The operator's documents match the stack: outputs, context keys, alarms, make targets, and
pointers that lead somewhere inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.bundling import REPO_ROOT
from infra.constants import (
    OUTPUT_ACCESS_LOG_GROUP,
    OUTPUT_CONSUMER_LOG_GROUP,
    OUTPUT_INGEST_LOG_GROUP,
)
from infra.context import CONTEXT_KEYS
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
DEPLOY = REPO_ROOT / "docs" / "deploy.md"
README = REPO_ROOT / "README.md"
DECISIONS = REPO_ROOT / "docs" / "decisions.md"
MAKEFILE = REPO_ROOT / "Makefile"
OPERATOR_DOCS = (README, DEPLOY, RUNBOOK)


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def output_keys(s: Synthesized) -> set[str]:
    return set(s.template.to_json()["Outputs"])


def test_the_runbook_names_the_log_groups_by_their_outputs(default_stack: Synthesized) -> None:
    runbook = text(RUNBOOK)
    for key in (OUTPUT_INGEST_LOG_GROUP, OUTPUT_CONSUMER_LOG_GROUP, OUTPUT_ACCESS_LOG_GROUP):
        assert key in output_keys(default_stack)
        assert f"`{key}`" in runbook, key
    assert "/aws/lambda/" not in runbook  # a guessed log group name is no pointer


def test_the_deploy_guide_lists_every_output(default_stack: Synthesized) -> None:
    guide = text(DEPLOY)
    for key in output_keys(default_stack):
        assert f"`{key}`" in guide, key


# Backticked names shaped like this stack's output keys.
_OUTPUT_LIKE = re.compile(r"`([A-Z][A-Za-z]*(?:Url|Arn|Name|Recipient))`")


@pytest.mark.parametrize("path", OPERATOR_DOCS, ids=lambda p: p.name)
def test_every_output_the_docs_name_exists(default_stack: Synthesized, path: Path) -> None:
    named = set(_OUTPUT_LIKE.findall(text(path)))
    assert named, f"{path.name} names no output at all"
    assert named <= output_keys(default_stack), named - output_keys(default_stack)


def table_after(header: str, document: str) -> list[str]:
    """The rows of the Markdown table whose header line starts with `header`."""
    lines = document.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_deploy_guide_documents_exactly_the_context_keys() -> None:
    rows = table_after("| key |", text(DEPLOY))
    documented = {key for row in rows for key in re.findall(r"`([a-zA-Z]+)`", row.split("|")[1])}
    assert documented == {key.name for key in CONTEXT_KEYS}


def test_the_deploy_guide_tables_exactly_the_outputs(default_stack: Synthesized) -> None:
    rows = table_after("| output |", text(DEPLOY))
    documented = {key for row in rows for key in re.findall(r"`([A-Za-z]+)`", row.split("|")[1])}
    assert documented == output_keys(default_stack)


_NUMBERS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14}
_ALARM_COUNT = re.compile(r"\b(\d+|ten|eleven|twelve|thirteen|fourteen) alarms\b", re.IGNORECASE)


def test_alarm_counts_in_the_docs_are_the_stacks(default_stack: Synthesized) -> None:
    count = len(default_stack.resources("AWS::CloudWatch::Alarm"))
    stated = []
    for path in OPERATOR_DOCS:
        for word in _ALARM_COUNT.findall(text(path)):
            stated.append((path.name, int(_NUMBERS.get(word.lower(), word))))
    assert stated, "no document says how many alarms there are"
    assert all(n == count for _, n in stated), (count, stated)


def test_every_make_target_the_docs_name_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", text(MAKEFILE), re.MULTILINE))
    for path in (*OPERATOR_DOCS, REPO_ROOT / "docs" / "reply-rules.md"):
        for target in re.findall(r"`make ([a-z][a-z-]*)", text(path)):
            assert target in targets, f"{path.name} names `make {target}`"


# --- nothing points outside the repository ---------------------------------------------------

# What a path outside this checkout looks like: parent directories, home directories, the
# workspace this was developed in.
_OUTSIDE = re.compile(r"(?<![\w.])\.\./|~/|(?<![\w/.:-])/(?:work|home|Users|shared|root)/")


def _files_to_check() -> list[Path]:
    files = [MAKEFILE, REPO_ROOT / "app.py", REPO_ROOT / "cdk.json", README]
    files += sorted((REPO_ROOT / "docs").glob("*.md"))
    files += sorted((REPO_ROOT / "infra").glob("*.py"))
    files += sorted((REPO_ROOT / "tools").glob("*.py"))
    return files


def test_no_path_outside_the_repository_is_referenced() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in _files_to_check()
        for number, line in enumerate(text(path).splitlines(), start=1)
        if _OUTSIDE.search(line)
    ]
    assert offenders == []


def test_the_outside_path_pattern_catches_what_it_should() -> None:
    for line in ("see ../shared/reference/contract.md", "`/work/shared/x.md`", "~/notes"):
        assert _OUTSIDE.search(line), line
    for line in ("https://graph.facebook.com/v25.0/", "/var/task/functions", "docs/runbook.md"):
        assert not _OUTSIDE.search(line), line


# --- the Makefile's pointers into the decision log lead somewhere ------------------------------


def test_every_pointer_into_the_decision_log_exists() -> None:
    """Pointers name the entry by its title (`"<title>" in docs/decisions.md`), which survives
    the entries being renumbered; each title must be in a heading of the log."""
    headings = [line[3:] for line in text(DECISIONS).splitlines() if line.startswith("## ")]
    pointing = [MAKEFILE, REPO_ROOT / "app.py", *sorted((REPO_ROOT / "infra").glob("*.py"))]
    pointing += [REPO_ROOT / "tests" / "infra" / "conftest.py"]
    for path in pointing:
        # comments may wrap a pointer over two lines
        source = " ".join(text(path).replace("#", " ").split())
        titles = re.findall(r'"([^"]+)" in docs/decisions\.md', source)
        assert len(titles) == source.count("docs/decisions.md"), f"{path.name}: untitled pointer"
        for title in titles:
            assert any(title in h for h in headings), f"{path.name}: no entry titled {title!r}"
    assert '"Node 20 banners and CDK notices silenced" in docs/decisions.md' in " ".join(
        text(MAKEFILE).replace("#", " ").split()
    )
