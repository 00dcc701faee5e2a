"""After the whole suite: every AWS call the functions and the tools made anywhere in it is one
the IAM proofs checked.

`make test` runs the suite with RELAY_RECORD_AWS_CALLS set and tests/iam/recording_site on
PYTHONPATH, so every Python process of the run - pytest's workers and the processes of `make run`
that the e2e tests start, where the handlers run in execution environments of their own - appends
each call that code in functions/ or tools/ makes to a file of its own
(tests/iam/recorder.py). Then `make test` runs this module by name (its file name keeps it out of
the normal collection: it needs the suite's records). The integration and e2e suites drive the
handlers and tools through far more situations than the dedicated scenarios; a call they reach
that the scenarios never made (a new adapter, a call a library makes for the code) would escape
test_function_roles.py and test_operator_permissions.py, so it fails here.

Compared by (file that made the call, service, operation): the scenarios decide which resource
each call is on, from the stack's template.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.iam.recorder import ENV_RECORD_DIRECTORY, AwsCall, read_calls

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Records:
    suites: list[AwsCall]  # everything the run recorded, scenarios included
    functions_scenarios: list[AwsCall]  # tests/iam/test_function_roles.py
    tools_scenario: list[AwsCall]  # tests/iam/test_operator_permissions.py


@pytest.fixture(scope="module")
def records() -> Records:
    directory = os.environ.get(ENV_RECORD_DIRECTORY)
    if not directory:
        pytest.fail(f"run by `make test`, after a suite run with {ENV_RECORD_DIRECTORY} set")
    path = Path(directory)
    return Records(
        suites=read_calls(path, "calls-*.jsonl"),
        functions_scenarios=read_calls(path, "scenario-functions-*.jsonl"),
        tools_scenario=read_calls(path, "scenario-tools.jsonl"),
    )


def made_by(calls: list[AwsCall], directory: str) -> set[tuple[str | None, str, str]]:
    return {call.key for call in calls if (call.origin or "").startswith(f"{directory}/")}


def test_the_scenarios_ran_and_were_recorded(records: Records) -> None:
    assert made_by(records.functions_scenarios, "functions")
    assert made_by(records.tools_scenario, "tools")


def test_the_handlers_were_recorded_in_the_processes_of_make_run_too(records: Records) -> None:
    """The e2e suite's handlers run in child processes: their calls reached the records."""
    children = [call for call in records.suites if not call.in_pytest]
    assert made_by(children, "functions")


def test_every_call_of_the_functions_in_the_suites_was_checked_against_the_roles(
    records: Records,
) -> None:
    unchecked = made_by(records.suites, "functions") - made_by(
        records.functions_scenarios, "functions"
    )
    assert sorted(unchecked, key=str) == [], (
        "calls of functions/ that tests/iam/scenario.py never made, so no role was checked "
        "for them: make the scenario reach them"
    )


def test_every_call_of_the_tools_in_the_suites_was_checked_against_the_runbook(
    records: Records,
) -> None:
    unchecked = made_by(records.suites, "tools") - made_by(records.tools_scenario, "tools")
    assert sorted(unchecked, key=str) == [], (
        "calls of tools/ that no command of the runbook's permissions table made"
    )
