"""tools/dlq against moto's server (inspect, stack outputs) and botocore's Stubber (redrive:
moto 5.2 does not implement StartMessageMoveTask, so the request shape is pinned instead)."""

from __future__ import annotations

import io
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.adapters import aws
from functions.adapters.dead_letters import SqsDeadLetters
from functions.domain.consumer.ports import DeadLetter
from infra.constants import OUTPUT_CONSUMER_LOG_GROUP, OUTPUT_DLQ_URL, OUTPUT_QUEUE_URL
from local_pipeline.config import LOCAL_REGION
from local_pipeline.emulator import aws_client, create_resources
from local_pipeline.state import PipelineState, write_state
from tests.conftest import TEST_REGION, FifoQueues, boto_client
from tools import dlq

pytestmark = pytest.mark.integration

SENDER = "16505551234"
SECRET_TEXT = "my card number is 4111"


def record_body(wamid: str, *, sender: str = SENDER, kind: str = "text") -> str:
    message: dict[str, Any] = {"from": sender, "id": wamid, "timestamp": "1764057600", "type": kind}
    if kind == "text":
        message["text"] = {"body": SECRET_TEXT}
    return json.dumps(
        {
            "schemaVersion": 1,
            "wamid": wamid,
            "receivedAt": "2026-11-25T08:00:00.000Z",
            "business": {"phoneNumberId": "106540352242922", "displayPhoneNumber": "15550783881"},
            "contact": {"waId": sender, "name": "Sheena Nelson", "userId": None},
            "message": message,
        }
    )


def dead_letter(queues: FifoQueues, body: str, *, group: str = "g1") -> str:
    return str(
        queues.sqs.send_message(
            QueueUrl=queues.dlq_url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=uuid.uuid4().hex,
        )["MessageId"]
    )


def test_inspect_shows_masked_facts_and_leaves_every_message_in_place(
    fifo_queues: FifoQueues,
) -> None:
    # Given two dead-lettered records of two conversations and one poison message
    dead_letter(fifo_queues, record_body("wamid.AAA"), group="a")
    dead_letter(
        fifo_queues, record_body("wamid.BBB", kind="image", sender="447700900123"), group="b"
    )
    poison_id = dead_letter(fifo_queues, '{"schemaVersion": 99}', group="c")

    # When the operator inspects the DLQ
    entries = dlq.inspect_dlq(
        fifo_queues.sqs,
        fifo_queues.dlq_url,
        now=lambda: datetime.now(UTC) + timedelta(minutes=5),
    )
    out = io.StringIO()
    dlq.render_entries(entries, out)
    text = out.getvalue()

    # Then each record shows its wamid, type, masked sender and age; the poison one says why
    by_wamid = {e.wamid: e for e in entries if e.wamid}
    assert set(by_wamid) == {"wamid.AAA", "wamid.BBB"}
    assert by_wamid["wamid.AAA"].message_type == "text"
    assert by_wamid["wamid.AAA"].sender == "*******1234"
    assert by_wamid["wamid.BBB"].message_type == "image"
    assert by_wamid["wamid.BBB"].receive_count == 1
    assert by_wamid["wamid.AAA"].age_seconds is not None
    assert 290 <= by_wamid["wamid.AAA"].age_seconds <= 400
    poison = next(e for e in entries if e.message_id == poison_id)
    assert poison.unreadable is not None
    assert "schemaVersion" in poison.unreadable
    assert "unreadable record (poison)" in text
    # and no personal data or message text is printed
    assert SENDER not in text
    assert "447700900123" not in text
    assert SECRET_TEXT not in text
    assert "Sheena" not in text
    # and nothing was deleted: all three are visible again right away
    assert len(fifo_queues.drain(fifo_queues.dlq_url)) == 3


def test_inspect_says_why_the_consumer_dead_lettered_each_message(
    fifo_queues: FifoQueues,
) -> None:
    # Given a record the consumer dead-lettered itself, and one SQS's backstop moved
    letters = SqsDeadLetters(aws.sqs(), fifo_queues.dlq_url)
    letters.send(
        record_body("wamid.OWN"),
        "a",
        DeadLetter("attempts_exhausted", "131056", "pair_rate_limit", 8, 1_795_597_200.0),
    )
    dead_letter(fifo_queues, record_body("wamid.SQS"), group="b")

    # When the operator inspects the DLQ
    entries = dlq.inspect_dlq(fifo_queues.sqs, fifo_queues.dlq_url)
    out = io.StringIO()
    dlq.render_entries(entries, out)

    # Then the consumer's reason is shown without any log query, and the backstop is named
    by_wamid = {e.wamid: e for e in entries}
    own = by_wamid["wamid.OWN"]
    assert (own.reason, own.error_code, own.error_class, own.attempts) == (
        "attempts_exhausted",
        "131056",
        "pair_rate_limit",
        8,
    )
    assert own.last_attempt_at == "2026-11-25T09:00:00+00:00"
    assert by_wamid["wamid.SQS"].reason is None
    text = out.getvalue()
    assert "why: attempts_exhausted  error_code=131056  class=pair_rate_limit  attempts=8" in text
    assert "no reason recorded: SQS moved it after maxReceiveCount receives" in text


def test_inspect_of_an_empty_queue_says_so(fifo_queues: FifoQueues) -> None:
    out = io.StringIO()
    dlq.render_entries(dlq.inspect_dlq(fifo_queues.sqs, fifo_queues.dlq_url), out)
    assert out.getvalue() == "The dead-letter queue is empty.\n"


def test_inspect_stops_at_the_limit(fifo_queues: FifoQueues) -> None:
    for n in range(12):
        dead_letter(fifo_queues, record_body(f"wamid.{n:03d}"), group=f"g{n}")
    entries = dlq.inspect_dlq(fifo_queues.sqs, fifo_queues.dlq_url, limit=5)
    assert len(entries) == 5
    assert len(fifo_queues.drain(fifo_queues.dlq_url)) == 12


def _stack_with_outputs(aws: str, queues: FifoQueues) -> str:
    cloudformation = boto_client("cloudformation", aws)
    name = f"relay-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            OUTPUT_DLQ_URL: {"Value": queues.dlq_url},
            OUTPUT_QUEUE_URL: {"Value": queues.queue_url},
            OUTPUT_CONSUMER_LOG_GROUP: {"Value": "/aws/lambda/relay-consumer"},
        },
    }
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def test_cli_inspect_finds_the_queues_from_the_stack_outputs(
    aws: str, fifo_queues: FifoQueues
) -> None:
    # Given a deployed stack (its outputs) and a dead-lettered record
    stack = _stack_with_outputs(aws, fifo_queues)
    dead_letter(fifo_queues, record_body("wamid.CLI"))
    out = io.StringIO()

    # When the operator runs `python -m tools.dlq inspect --stack-name <stack>`
    code = dlq.main(["inspect", "--stack-name", stack, "--region", TEST_REGION], out=out)

    # Then the record is listed and the Logs Insights query for it names the consumer log group
    text = out.getvalue()
    assert code == 0
    assert "wamid=wamid.CLI" in text
    assert "/aws/lambda/relay-consumer" in text
    assert 'filter wamid in ["wamid.CLI"]' in text


def test_cli_json_output_is_one_object_per_message(fifo_queues: FifoQueues) -> None:
    dead_letter(fifo_queues, record_body("wamid.JSON"))
    out = io.StringIO()
    code = dlq.main(["inspect", "--dlq-url", fifo_queues.dlq_url, "--json"], out=out)
    first = json.loads(out.getvalue().splitlines()[0])
    assert code == 0
    assert first["wamid"] == "wamid.JSON"
    assert first["sender"] == "*******1234"


def test_cli_reports_a_missing_stack_as_an_error(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = dlq.main(["inspect", "--stack-name", "no-such-stack", "--region", TEST_REGION])
    assert code == 1
    assert "error:" in capsys.readouterr().err


def test_redrive_starts_a_message_move_task_from_the_dlq_to_the_inbound_queue() -> None:
    from botocore.stub import Stubber

    # Given an SQS client whose requests are pinned
    sqs = boto_client("sqs", "http://127.0.0.1:9")
    dlq_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/relay-dlq.fifo"
    queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/relay.fifo"
    dlq_arn = "arn:aws:sqs:eu-west-1:123456789012:relay-dlq.fifo"
    queue_arn = "arn:aws:sqs:eu-west-1:123456789012:relay.fifo"
    stubber = Stubber(sqs)
    for url, arn in ((dlq_url, dlq_arn), (queue_url, queue_arn)):
        stubber.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": arn}},
            {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
        )
    stubber.add_response(
        "start_message_move_task",
        {"TaskHandle": "task-123"},
        {"SourceArn": dlq_arn, "DestinationArn": queue_arn, "MaxNumberOfMessagesPerSecond": 5},
    )

    # When the operator starts a redrive paced at 5 messages per second
    with stubber:
        handle = dlq.start_redrive(sqs, dlq_url, queue_url, max_per_second=5)

    # Then SQS's own move task runs from the DLQ's ARN to the inbound queue's ARN
    assert handle == "task-123"
    stubber.assert_no_pending_responses()


def test_redrive_status_shows_progress() -> None:
    out = io.StringIO()
    dlq.render_tasks(
        [
            {
                "Status": "RUNNING",
                "ApproximateNumberOfMessagesMoved": 3,
                "ApproximateNumberOfMessagesToMove": 10,
                "StartedTimestamp": 1795593600000,
            },
            {
                "Status": "FAILED",
                "FailureReason": "AccessDenied",
                "StartedTimestamp": 1764050000000,
            },
        ],
        out,
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "- RUNNING: 3/10 moved, started 2026-11-25T08:00:00+00:00"
    assert lines[1].startswith("- FAILED: 0/? moved")
    assert lines[1].endswith("failure: AccessDenied")


class FakeLogs:
    """A Logs Insights client that answers `Running` a few times, then the rows."""

    def __init__(self, *, running_polls: int, status: str = "Complete") -> None:
        self.running_polls = running_polls
        self.status = status
        self.queries: list[dict[str, Any]] = []

    def start_query(self, **request: Any) -> dict[str, str]:
        self.queries.append(request)
        return {"queryId": "q-1"}

    def get_query_results(self, *, queryId: str) -> dict[str, Any]:
        if self.running_polls:
            self.running_polls -= 1
            return {"status": "Running", "results": []}
        row = [
            {"field": "wamid", "value": "wamid.AAA"},
            {"field": "error_code", "value": "190"},
            {"field": "@ptr", "value": "opaque"},
        ]
        return {"status": self.status, "results": [row]}


def test_why_runs_the_logs_insights_query_until_it_completes() -> None:
    logs = FakeLogs(running_polls=2)
    clock = [1_764_057_600.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    rows = dlq.run_logs_query(
        logs, "/aws/lambda/c", dlq.why_query(["wamid.AAA"]), now=lambda: clock[0], sleep=sleep
    )
    assert rows == [{"wamid": "wamid.AAA", "error_code": "190"}]
    assert sleeps == [1.0, 1.0]
    assert logs.queries[0]["logGroupName"] == "/aws/lambda/c"
    assert 'filter wamid in ["wamid.AAA"]' in logs.queries[0]["queryString"]


def test_why_gives_up_after_its_timeout() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with pytest.raises(dlq.DlqToolError, match="did not finish"):
        dlq.run_logs_query(
            FakeLogs(running_polls=1000),
            "g",
            "q",
            now=lambda: clock[0],
            sleep=sleep,
            timeout_seconds=3,
        )


def test_why_reports_a_failed_query() -> None:
    with pytest.raises(dlq.DlqToolError, match="Failed"):
        dlq.run_logs_query(
            FakeLogs(running_polls=0, status="Failed"), "g", "q", sleep=lambda s: None
        )


def test_inspect_names_a_status_record_by_its_reply(fifo_queues: FifoQueues) -> None:
    body = json.dumps(
        {
            "schemaVersion": 1,
            "kind": "status",
            "receivedAt": "2026-11-25T08:00:00.000Z",
            "business": {"phoneNumberId": "106540352242922"},
            "status": {"id": "wamid.OURS", "status": "failed", "timestamp": "1764057600"},
        }
    )
    dead_letter(fifo_queues, body)

    [entry] = dlq.inspect_dlq(fifo_queues.sqs, fifo_queues.dlq_url)

    assert (entry.wamid, entry.message_type, entry.unreadable) == (
        "wamid.OURS",
        "status:failed",
        None,
    )


# --- against `make run` (its state file, moto) --------------------------------------------------


@pytest.fixture
def local_pipeline_state(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> PipelineState:
    """A running `make run` as the tools see it: its state file (naming this live process) and
    the stack's queues in moto, as `make run` creates them."""
    resources = create_resources(
        moto_endpoint,
        app_secret="local-app-secret",
        verify_token="local-verify-token",
        access_token="local-access-token",
        name_suffix="-" + uuid.uuid4().hex[:8],
    )
    state = PipelineState(
        pid=os.getpid(),
        webhook_url="http://127.0.0.1:3000/webhook",
        aws_endpoint=moto_endpoint,
        region=LOCAL_REGION,
        secret_id=resources.secret_id,
        queue_url=resources.queue_url,
        dlq_url=resources.dlq_url,
        consumer_log=str(tmp_path / "consumer.log"),
    )
    write_state(tmp_path, state)
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path))
    return state


def test_inspect_reads_the_dlq_of_a_running_make_run_masked(
    local_pipeline_state: PipelineState,
) -> None:
    # Given a dead-lettered record in the local pipeline's DLQ, and the consumer's log file
    state = local_pipeline_state
    aws_client("sqs", state.aws_endpoint).send_message(
        QueueUrl=state.dlq_url,
        MessageBody=record_body("wamid.LOCAL"),
        MessageGroupId="g",
        MessageDeduplicationId=uuid.uuid4().hex,
    )
    Path(state.consumer_log).write_text(
        "not json\n"
        + json.dumps({"wamid": "wamid.LOCAL", "result": "retry", "error_code": "131000"})
        + "\n"
        + json.dumps({"wamid": "wamid.OTHER", "result": "replied"})
        + "\n",
        encoding="utf-8",
    )
    out = io.StringIO()

    # When the operator runs `make inspect-dlq ARGS=--why`, naming nothing
    code = dlq.main(["inspect", "--why"], out=out)

    # Then the local DLQ is listed, masked, with what the local consumer logged for it
    text = out.getvalue()
    assert code == 0
    assert text.startswith(f"Local pipeline (`make run`, moto at {state.aws_endpoint}).\n")
    assert "wamid=wamid.LOCAL" in text
    assert "from=*******1234" in text
    assert SENDER not in text
    assert SECRET_TEXT not in text
    assert '{"wamid": "wamid.LOCAL", "result": "retry", "error_code": "131000"}' in text
    assert "wamid.OTHER" not in text


def test_redrive_and_status_against_make_run_say_why_not_in_one_line(
    local_pipeline_state: PipelineState, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("redrive", "status"):
        assert dlq.main([command]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"make {command}: moto")
        assert "does not implement StartMessageMoveTask" in line
        assert "send the webhooks again" in line


def test_deployed_or_named_queues_ignore_a_running_make_run(
    local_pipeline_state: PipelineState, fifo_queues: FifoQueues
) -> None:
    dead_letter(fifo_queues, record_body("wamid.DEPLOYED"))
    out = io.StringIO()
    assert dlq.main(["inspect", "--dlq-url", fifo_queues.dlq_url], out=out) == 0
    assert "wamid=wamid.DEPLOYED" in out.getvalue()
    assert "Local pipeline" not in out.getvalue()
    args = dlq._parser().parse_args(["inspect", "--deployed"])
    assert dlq.local_pipeline(args) is None


def test_local_without_a_running_make_run_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path))
    assert dlq.main(["inspect", "--local"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "no `make run` is running" in line
