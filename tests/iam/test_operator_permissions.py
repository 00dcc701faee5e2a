"""The runbook's table of the permissions each operator command needs is what the commands call.

Each row of the table (docs/runbook.md, "Permissions for the operator commands") is run the way
it is named: `make <target>` runs what the Makefile's recipe for that target runs
(`$(PY) -m tools.<module> <args> $(ARGS)`), `python -m tools.<module> <args>` that; the options
the row names ("with `--why`") are run too. Each runs against a deployed stack in moto (its
outputs naming a queue, a DLQ, the consumer's log group and the secret), with every boto3
session the tools open recording its calls (tests/iam/recorder.py). The calls become IAM
permissions by AWS's rules (tests/iam/authorization.py), each on a resource the runbook names
("the DLQ", "the stack", ...), and must be exactly the row's: a permission the command needs and
the table lacks fails, and so does one the table asks for that nothing uses.

moto lacks SQS's message-move task (StartMessageMoveTask, ListMessageMoveTasks): those two calls
are recorded and then answered here, with the shapes SQS answers them with, instead of by moto.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import re
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name

from functions.common.names import (
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import (
    OUTPUT_CONSUMER_LOG_GROUP,
    OUTPUT_DLQ_URL,
    OUTPUT_INGEST_LOG_GROUP,
    OUTPUT_QUEUE_URL,
    OUTPUT_SECRET_ARN,
    OUTPUT_TABLE_NAME,
)
from tests.conftest import TEST_REGION, boto_client
from tests.iam.authorization import ArnNames, Permission, permissions_for
from tests.iam.recorder import ENV_RECORD_DIRECTORY, REPO_ROOT, AwsCall, CallRecorder
from tests.iam.source_scan import operations_called_in
from tests.unit.consumer.builders import queued_body

pytestmark = pytest.mark.integration

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
MAKEFILE = REPO_ROOT / "Makefile"
TOOLS_DIR = REPO_ROOT / "tools"
TABLE_HEADING = "## Permissions for the operator commands"
NEW_TOKEN = "EAAGnewSystemUserToken0123456789"
# The resources the commands act on, and what the runbook calls them.
STACK, DLQ, QUEUE, TABLE, SECRET, ANY = "stack", "DLQ", "queue", "table", "secret", "*"
CONSUMER_LOGS, INGEST_LOGS = "consumer's log group", "ingest's log group"
RESOURCE_PHRASES: dict[str, tuple[str, ...]] = {
    "the stack": (STACK,),
    "the DLQ": (DLQ,),
    "the inbound queue": (QUEUE,),
    "the table": (TABLE,),
    "the secret": (SECRET,),
    "the consumer's log group": (CONSUMER_LOGS,),
    "the ingest's and the consumer's log groups": (INGEST_LOGS, CONSUMER_LOGS),
    "any": (ANY,),
}
# What the Makefile's recipes take from the command line (`make trace WAMID=...`).
WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUI2="
MAKE_VARIABLES = {"WAMID": WAMID}


# --- the runbook's table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    command: str  # "make inspect-dlq", "python -m tools.dlq status"
    permissions: frozenset[tuple[str, str]]  # (action, resource)
    options: tuple[str, ...]  # options the row's permissions depend on: ("--why",)


_ACTION = re.compile(r"`([a-z0-9-]+:[A-Za-z*]+)`")
_OPTION = re.compile(r"with `(--[a-z-]+)`")


def runbook_rows() -> list[Row]:
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text[text.index(TABLE_HEADING) :].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        command, actions, on = cells
        action_groups, resource_groups = actions.split(";"), on.split(";")
        assert len(action_groups) == len(resource_groups), (
            f"{command}: {len(action_groups)} groups of actions for {len(resource_groups)} "
            "resources - the table pairs them by position"
        )
        permissions: set[tuple[str, str]] = set()
        for group, resource in zip(action_groups, resource_groups, strict=True):
            phrase = next((p for p in RESOURCE_PHRASES if resource.strip().startswith(p)), None)
            assert phrase is not None, f"{command}: unknown resource {resource.strip()!r}"
            assert _ACTION.findall(group), f"{command}: no action in {group.strip()!r}"
            permissions.update(
                (action, named)
                for action in _ACTION.findall(group)
                for named in RESOURCE_PHRASES[phrase]
            )
        rows.append(
            Row(
                command=command.strip("`"),
                permissions=frozenset(permissions),
                options=tuple(_OPTION.findall(actions)),
            )
        )
    return rows


def tool_invocation(command: str) -> tuple[str, list[str]]:
    """The tool module and arguments a runbook command runs."""
    words = shlex.split(command)
    if words[0] == "make":
        recipe = re.search(
            rf"^{re.escape(words[1])}:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(encoding="utf-8"), re.M
        )
        assert recipe is not None, f"no make target {words[1]}"
        found = re.search(r"\$\(PY\) -m (tools\.\w+)(.*?)\$\(ARGS\)", recipe.group(1))
        assert found is not None, f"make {words[1]} runs no operator tool"
        arguments = re.sub(r"\$\((\w+)\)", lambda v: MAKE_VARIABLES[v.group(1)], found.group(2))
        return found.group(1), shlex.split(arguments)
    assert words[:2] == ["python", "-m"], command
    return words[2], words[3:]


# --- a deployed stack in moto, and the tools' sessions recording -----------------------------


@dataclass(frozen=True)
class Deployed:
    stack_name: str
    resources: dict[str, str]  # ARN -> which resource it is


def deploy(endpoint: str) -> Deployed:
    """A stack whose outputs name a queue, its DLQ (one dead letter in it), the consumer's log
    group and the secret."""
    suffix = uuid.uuid4().hex[:8]
    sqs = boto_client("sqs", endpoint)
    fifo = {"FifoQueue": "true"}
    queue_url = sqs.create_queue(QueueName=f"relay-{suffix}.fifo", Attributes=fifo)["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName=f"relay-dlq-{suffix}.fifo", Attributes=fifo)["QueueUrl"]
    sqs.send_message(
        QueueUrl=dlq_url, MessageBody=queued_body(), MessageGroupId="g", MessageDeduplicationId="d"
    )
    secret_arn = boto_client("secretsmanager", endpoint).create_secret(
        Name=f"relay-{suffix}",
        SecretString=json.dumps(
            {
                SECRET_KEY_APP_SECRET: "s" * 32,
                SECRET_KEY_VERIFY_TOKEN: "v" * 16,
                SECRET_KEY_ACCESS_TOKEN: "EAAGoldToken",
            }
        ),
    )["ARN"]
    logs = boto_client("logs", endpoint)
    log_groups = {name: f"/relay/{suffix}/{name}" for name in ("consumer", "ingest")}
    for group in log_groups.values():
        logs.create_log_group(logGroupName=group)
    table = f"relay-{suffix}"
    dynamodb = boto_client("dynamodb", endpoint)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=table, Item={"id": {"S": f"msg#{WAMID}"}, "status": {"S": "done"}})
    stack_name = f"relay-{suffix}"
    boto_client("cloudformation", endpoint).create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic", "DeletionPolicy": "Retain"}},
                "Outputs": {
                    OUTPUT_QUEUE_URL: {"Value": queue_url},
                    OUTPUT_DLQ_URL: {"Value": dlq_url},
                    OUTPUT_CONSUMER_LOG_GROUP: {"Value": log_groups["consumer"]},
                    OUTPUT_INGEST_LOG_GROUP: {"Value": log_groups["ingest"]},
                    OUTPUT_TABLE_NAME: {"Value": table},
                    OUTPUT_SECRET_ARN: {"Value": secret_arn},
                },
            }
        ),
    )
    names = arn_names()
    return Deployed(
        stack_name=stack_name,
        resources={
            names.stack(stack_name): STACK,
            names.queue(dlq_url): DLQ,
            names.queue(queue_url): QUEUE,
            names.table(table): TABLE,
            names.log_group(log_groups["consumer"]): CONSUMER_LOGS,
            names.log_group(log_groups["ingest"]): INGEST_LOGS,
            secret_arn: SECRET,
            "*": ANY,
        },
    )


def arn_names() -> ArnNames:
    return ArnNames(region=TEST_REGION, account="123456789012")  # moto's account


# SQS's answers to what moto lacks (API reference: StartMessageMoveTask, ListMessageMoveTasks).
MOTO_GAPS: dict[str, dict[str, Any]] = {
    "StartMessageMoveTask": {"TaskHandle": "task-handle-1"},
    "ListMessageMoveTasks": {
        "Results": [
            {
                "TaskHandle": "task-handle-1",
                "Status": "RUNNING",
                "ApproximateNumberOfMessagesMoved": 0,
                "ApproximateNumberOfMessagesToMove": 1,
                "StartedTimestamp": 1795593600000,
            }
        ]
    },
}


def _answer_what_moto_lacks(model: Any, **_: Any) -> Any:
    from botocore.awsrequest import AWSResponse

    answer = MOTO_GAPS.get(model.name)
    if answer is None:
        return None
    response: Any = AWSResponse  # as botocore's Stubber answers: no URL, headers or body
    return response(None, 200, {}, None), answer


def run(command: str, options: tuple[str, ...], deployed: Deployed) -> None:
    module_name, arguments = tool_invocation(command)
    main = importlib.import_module(module_name).main
    argv = [*arguments, *options, "--stack-name", deployed.stack_name, "--region", TEST_REGION]
    streams: dict[str, Any] = {"out": io.StringIO()}
    if "stdin" in inspect.signature(main).parameters:
        streams["stdin"] = io.StringIO(NEW_TOKEN + "\n")
    assert main(argv, **streams) == 0, f"{command} {options} failed: {streams['out'].getvalue()}"


@dataclass(frozen=True)
class OperatorRuns:
    deployed: Deployed
    calls: dict[str, list[AwsCall]]  # by the row's command


@pytest.fixture(scope="module")
def operator_runs(moto_endpoint: str) -> OperatorRuns:
    """Every row's command run once (and once with each option it names), every boto3 session
    the tools open (`boto3.session.Session(...)`) recording."""
    import boto3.session

    original = boto3.session.Session
    recorder = CallRecorder()

    class RecordingSession(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            recorder.attach(self._session)
            self._session.register("before-call.sqs.*", _answer_what_moto_lacks)

    calls: dict[str, list[AwsCall]] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        deployed = deploy(moto_endpoint)
        patch.setattr(boto3.session, "Session", RecordingSession)
        for row in ROWS:
            recorder.calls.clear()
            for options in ((), *((option,) for option in row.options)):
                run(row.command, options, deployed)
            calls[row.command] = list(recorder.calls)
    if os.environ.get(ENV_RECORD_DIRECTORY):  # `make test`: the suites' calls are checked too
        sink = Path(os.environ[ENV_RECORD_DIRECTORY]) / "scenario-tools.jsonl"
        sink.write_text(
            "".join(c.to_json() + "\n" for found in calls.values() for c in found), "utf-8"
        )
    return OperatorRuns(deployed=deployed, calls=calls)


def needed(calls: list[AwsCall], deployed: Deployed) -> set[tuple[str, str]]:
    permissions: set[Permission] = set()
    for call in calls:
        permissions.update(permissions_for(call, arn_names()))
    unknown = {p.resource for p in permissions} - set(deployed.resources)
    assert not unknown, f"calls on resources the runbook has no name for: {unknown}"
    return {(p.action, deployed.resources[p.resource]) for p in permissions}


ROWS = runbook_rows()


# --- the checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.command)
def test_the_runbook_lists_exactly_the_permissions_each_command_uses(
    row: Row, operator_runs: OperatorRuns
) -> None:
    used = needed(operator_runs.calls[row.command], operator_runs.deployed)
    assert used == set(row.permissions), (
        f"{row.command}: the table lacks {sorted(used - row.permissions)}, "
        f"lists unused {sorted(row.permissions - used)}"
    )


def test_every_aws_call_in_the_tools_was_made_by_a_command_of_the_table(
    operator_runs: OperatorRuns,
) -> None:
    in_source = operations_called_in(TOOLS_DIR)
    recorded = {
        (call.origin, xform_name(call.operation))
        for found in operator_runs.calls.values()
        for call in found
    }
    assert in_source, "the scan found no AWS call in tools/: it is broken"
    assert sorted(in_source - recorded) == []


def test_every_operator_tool_has_a_row() -> None:
    documented = {tool_invocation(row.command)[0] for row in ROWS}
    tools = {
        f"tools.{path.stem}"
        for path in TOOLS_DIR.glob("*.py")
        if re.search(r"^def main\(", path.read_text(encoding="utf-8"), re.M)
    }
    assert tools <= documented, tools - documented


def test_every_subcommand_of_the_dlq_tool_has_a_row() -> None:
    from tools import dlq

    parser = dlq._parser()
    subcommands = next(
        set(action.choices or ()) for action in parser._actions if action.dest == "command"
    )
    invocations = [tool_invocation(row.command) for row in ROWS]
    documented = {arguments[0] for module, arguments in invocations if module == "tools.dlq"}
    assert subcommands == documented


def test_the_table_parser_reads_every_command_the_table_names() -> None:
    assert {row.command for row in ROWS} >= {
        "make inspect-dlq",
        "make redrive",
        "make rotate-token",
        "make destroy",
        "make trace",
    }
    inspect_row = next(row for row in ROWS if row.command == "make inspect-dlq")
    assert inspect_row.options == ("--why",)
