"""How `make demo` and `make inspect-dlq` find a running `make run` (its state file), and how
`make run` checks the reply rules before it says Ready: files only, no network."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from functions.consumer.wiring import DEFAULT_RULES_PATH
from local_pipeline.demo import demo_target
from local_pipeline.rules_watch import RulesWatch, describe, rules_path, rules_problem
from local_pipeline.state import (
    NoRunningPipeline,
    PipelineState,
    remove_state,
    running_pipeline,
    state_file,
    write_state,
)

pytestmark = pytest.mark.unit

STATE = PipelineState(
    pid=4242,
    webhook_url="http://127.0.0.1:43123/webhook",
    aws_endpoint="http://127.0.0.1:41000",
    region="us-east-1",
    secret_id="whatsapp-relay/credentials",
    queue_url="http://127.0.0.1:41000/123456789012/whatsapp-relay-inbound.fifo",
    dlq_url="http://127.0.0.1:41000/123456789012/whatsapp-relay-inbound-dlq.fifo",
    consumer_log="/work/.local/logs/consumer.log",
)


def alive(_pid: int) -> bool:
    return True


def gone(_pid: int) -> bool:
    return False


# --- the state file ---------------------------------------------------------------------------


def test_a_written_state_is_found_while_its_process_runs(tmp_path: Path) -> None:
    write_state(tmp_path, STATE)
    assert running_pipeline(tmp_path, is_alive=alive) == STATE
    assert [p.name for p in tmp_path.iterdir()] == ["pipeline.json"]  # no partial file left


def test_no_state_file_says_to_start_make_run_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(NoRunningPipeline) as caught:
        running_pipeline(tmp_path, is_alive=alive)
    message = str(caught.value)
    assert "\n" not in message
    assert str(state_file(tmp_path)) in message
    assert "start one with `make run`" in message


def test_a_stale_state_file_says_its_make_run_is_gone_in_one_line(tmp_path: Path) -> None:
    write_state(tmp_path, STATE)
    with pytest.raises(NoRunningPipeline) as caught:
        running_pipeline(tmp_path, is_alive=gone)
    message = str(caught.value)
    assert "\n" not in message
    assert "is stale" in message
    assert "pid 4242" in message


@pytest.mark.parametrize("content", ["not json", "[]", '{"pid": "1"}', json.dumps({"pid": 1})])
def test_a_garbled_state_file_is_one_line_too(tmp_path: Path, content: str) -> None:
    state_file(tmp_path).write_text(content, encoding="utf-8")
    with pytest.raises(NoRunningPipeline, match="is not a `make run` state file"):
        running_pipeline(tmp_path, is_alive=alive)


def test_a_stopping_make_run_removes_only_its_own_state_file(tmp_path: Path) -> None:
    write_state(tmp_path, STATE)
    remove_state(tmp_path, pid=STATE.pid + 1)  # another make run, which another one replaced
    assert state_file(tmp_path).exists()
    remove_state(tmp_path, pid=STATE.pid)
    assert not state_file(tmp_path).exists()
    remove_state(tmp_path, pid=STATE.pid)  # already gone: nothing to do


def test_the_real_process_check_sees_this_process_and_not_a_dead_one(tmp_path: Path) -> None:
    import os

    from local_pipeline.state import process_is_alive

    assert process_is_alive(os.getpid())
    assert not process_is_alive(2**22 + 12345)  # above Linux's pid_max


# --- where make demo goes ---------------------------------------------------------------------


def test_the_demo_goes_where_the_state_file_says_and_reads_the_secret_itself(
    tmp_path: Path,
) -> None:
    write_state(tmp_path, STATE)
    environ = {"LOCAL_STATE_DIR": str(tmp_path)}
    assert demo_target(environ, is_alive=alive) == ("http://127.0.0.1:43123", None)


def test_port_and_secret_given_by_the_user_win(tmp_path: Path) -> None:
    write_state(tmp_path, STATE)
    environ = {"LOCAL_STATE_DIR": str(tmp_path), "PORT": "3999", "WHATSAPP_APP_SECRET": "s"}
    assert demo_target(environ, is_alive=alive) == ("http://127.0.0.1:3999", "s")


def test_without_a_running_pipeline_the_demo_says_so(tmp_path: Path) -> None:
    with pytest.raises(NoRunningPipeline):
        demo_target({"LOCAL_STATE_DIR": str(tmp_path)}, is_alive=alive)
    write_state(tmp_path, STATE)
    with pytest.raises(NoRunningPipeline, match="stale"):
        demo_target({"LOCAL_STATE_DIR": str(tmp_path)}, is_alive=gone)


# --- the reply rules gate ---------------------------------------------------------------------

BROKEN_RULE = {
    "version": 1,
    "rules": [
        {"name": "greeting", "match": {"keywords": ["hi"]}, "reply": {"type": "carrier-pigeon"}}
    ],
}


def write_rules(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_the_shipped_rules_load_and_are_the_default() -> None:
    assert rules_path({}) == DEFAULT_RULES_PATH
    assert rules_path({"REPLY_RULES_PATH": "mine.json"}) == Path("mine.json")
    assert rules_problem(DEFAULT_RULES_PATH) is None


def test_a_broken_rule_is_named_with_its_problem_in_one_line(tmp_path: Path) -> None:
    problem = rules_problem(write_rules(tmp_path / "rules.json", BROKEN_RULE))
    assert problem is not None
    assert "\n" not in problem
    assert "rule 'greeting'" in problem
    assert "carrier-pigeon" in problem


def test_a_file_that_is_not_json_or_missing_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "rules.json"
    broken.write_text('{"rules": [\n', encoding="utf-8")
    not_json = rules_problem(broken)
    assert not_json is not None
    assert "not JSON" in not_json
    assert "\n" not in not_json
    assert rules_problem(tmp_path / "nope.json") == f"{tmp_path / 'nope.json'} does not exist"


class ScriptedWait:
    """Stands in for the poll interval: runs one scripted edit per wait, never sleeps."""

    def __init__(self, *edits: object) -> None:
        self.edits = list(edits)

    def __call__(self, stop: threading.Event, _seconds: float) -> bool:
        if not self.edits:
            stop.set()
        else:
            edit = self.edits.pop(0)
            if callable(edit):
                edit()
        return stop.is_set()


def test_not_ready_until_the_file_is_fixed_then_ready(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "rules.json", BROKEN_RULE)
    reports: list[str | None] = []
    fixed = {**BROKEN_RULE, "rules": [{**BROKEN_RULE["rules"][0], "reply": None}]}  # type: ignore[index]
    wait = ScriptedWait(
        None,  # nothing changed yet: no second report
        lambda: write_rules(path, {**BROKEN_RULE, "version": 7}),  # still broken, differently
        lambda: write_rules(path, fixed),
    )
    watch = RulesWatch(path, reports.append, wait=wait)

    assert watch.wait_until_valid(threading.Event())

    assert len(reports) == 3
    assert "rule 'greeting'" in str(reports[0])
    assert "version 7" in str(reports[1])
    assert reports[2] is None


def test_stopping_while_not_ready_gives_up(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "rules.json", BROKEN_RULE)
    watch = RulesWatch(path, lambda _: None, wait=ScriptedWait())
    assert not watch.wait_until_valid(threading.Event())


def test_after_ready_a_breakage_and_its_fix_are_each_reported_once(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "rules.json", {"version": 1, "rules": []})
    good = path.read_text(encoding="utf-8")
    reports: list[str | None] = []
    wait = ScriptedWait(
        lambda: write_rules(path, BROKEN_RULE),
        None,
        lambda: path.write_text(good, encoding="utf-8"),
    )
    watch = RulesWatch(path, reports.append, wait=wait)
    assert watch.wait_until_valid(threading.Event())
    watch.watch(threading.Event())
    assert len(reports) == 2
    assert "rule 'greeting'" in str(reports[0])
    assert reports[1] is None


def test_the_console_lines_say_what_to_do() -> None:
    path = Path("rules.json")
    assert describe(path, "x: bad", ready=False).startswith("not Ready: the reply rules are broken")
    assert "fails every batch" in describe(path, "x: bad", ready=True)
    assert describe(path, None, ready=True) == "reply rules OK again: rules.json"
