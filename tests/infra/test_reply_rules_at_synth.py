"""Reply rules the consumer would refuse stop the synth, and what was checked is what runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from functions.common.names import ENV_REPLY_RULES_PATH
from infra.bundling import REPO_ROOT
from infra.constants import CONSUMER_HANDLER, DEFAULT_REPLY_RULES_FILE, LAMBDA_TASK_ROOT
from infra.reply_rules_check import ReplyRulesFileError, check_reply_rules, repository_relative
from infra.stack import RelayProps
from tests.infra.conftest import CUSTOM_PROPS, Synthesized, stand_in_code

pytestmark = pytest.mark.infra

BROKEN = "tests/infra/reply_rules/broken_rule.json"


def test_the_shipped_rules_pass() -> None:
    check_reply_rules(DEFAULT_REPLY_RULES_FILE)


def test_the_default_is_the_file_the_consumer_falls_back_to() -> None:
    from functions.consumer.wiring import DEFAULT_RULES_PATH

    assert REPO_ROOT / DEFAULT_REPLY_RULES_FILE == DEFAULT_RULES_PATH


def test_a_broken_rule_is_named_with_its_problem_on_one_line() -> None:
    with pytest.raises(ReplyRulesFileError) as raised:
        check_reply_rules(BROKEN)
    assert str(raised.value) == (
        f"reply rules {BROKEN}: rule 'opening-hours': `match` needs types, keywords or replyIds"
    )


def test_a_broken_shipped_file_stops_the_synth(tmp_path: Path) -> None:
    # Given a checkout whose shipped rules file has a reply of an unknown type
    shutil.copytree(REPO_ROOT / "functions" / "consumer", tmp_path / "functions" / "consumer")
    shipped = tmp_path / DEFAULT_REPLY_RULES_FILE
    document = json.loads(shipped.read_text(encoding="utf-8"))
    document["rules"][0]["reply"] = {"type": "carrier-pigeon"}
    shipped.write_text(json.dumps(document, indent=2), encoding="utf-8")

    # When it is checked, then the error names the rule and the problem
    with pytest.raises(ReplyRulesFileError) as raised:
        check_reply_rules(DEFAULT_REPLY_RULES_FILE, tmp_path)
    message = str(raised.value)
    assert message.startswith(f"reply rules {DEFAULT_REPLY_RULES_FILE}: rule 'greeting': reply")
    assert "\n" not in message


def test_a_file_that_is_not_json_says_where(tmp_path: Path) -> None:
    (tmp_path / "rules.json").write_text('{\n  "rules": [\n    oops\n  ]\n}\n')
    with pytest.raises(ReplyRulesFileError) as raised:
        check_reply_rules("rules.json", tmp_path)
    message = str(raised.value)
    assert message.startswith("reply rules rules.json: the reply rules are not JSON: ")
    assert "line 3" in message
    assert "\n" not in message


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplyRulesFileError, match="cannot read it"):
        check_reply_rules("missing.json", tmp_path)


def test_props_refuse_broken_rules() -> None:
    with pytest.raises(ReplyRulesFileError, match="opening-hours"):
        RelayProps(code=stand_in_code(), alarm_email=None, reply_rules_file=BROKEN)


@pytest.mark.parametrize(
    ("given", "relative"),
    [
        ("tests/infra/reply_rules/custom.json", "tests/infra/reply_rules/custom.json"),
        ("./tests/infra/../infra/reply_rules/custom.json", "tests/infra/reply_rules/custom.json"),
        (
            str(REPO_ROOT / "tests/infra/reply_rules/custom.json"),
            "tests/infra/reply_rules/custom.json",
        ),
    ],
)
def test_paths_are_taken_relative_to_the_repository(given: str, relative: str) -> None:
    assert repository_relative(given) == relative


@pytest.mark.parametrize(
    ("stack_name", "rules_file"),
    [
        ("default_stack", DEFAULT_REPLY_RULES_FILE),
        ("custom_stack", CUSTOM_PROPS["reply_rules_file"]),
    ],
)
def test_the_deployed_consumer_reads_the_file_that_was_checked(
    stack_name: str, rules_file: str, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(stack_name)
    _, consumer = s.one("AWS::Lambda::Function", {"Handler": CONSUMER_HANDLER})
    env = consumer["Properties"]["Environment"]["Variables"]
    # the asset keeps repository paths under the task root (tests/infra/test_bundling.py)
    assert env[ENV_REPLY_RULES_PATH] == f"{LAMBDA_TASK_ROOT}/{rules_file}"
