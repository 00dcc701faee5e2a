"""`make trace` (tools/trace.py): one customer message's story from the ledger (moto's DynamoDB,
written by the real adapter) and the functions' logs, masked."""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.adapters.aws import dynamodb
from functions.adapters.ledger import DynamoDbLedger
from functions.domain.consumer.ports import FailedAttempt, Finished, SentReply, StatusWrite
from infra.constants import (
    IDEMPOTENCY_PARTITION_KEY,
    OUTPUT_CONSUMER_LOG_GROUP,
    OUTPUT_INGEST_LOG_GROUP,
    OUTPUT_TABLE_NAME,
)
from local_pipeline.state import PipelineState, write_state
from tests.conftest import TEST_REGION, boto_client
from tools import trace

pytestmark = pytest.mark.integration

NUMBER = "16505551234"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
PNID = "106540352242922"
T0 = 1_795_597_200.0  # the customer's message, by Meta's clock


@pytest.fixture
def table(aws: str) -> Iterator[str]:
    name = f"trace-{uuid.uuid4().hex[:12]}"
    client = boto_client("dynamodb", aws)
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": IDEMPOTENCY_PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": IDEMPOTENCY_PARTITION_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield name
    client.delete_table(TableName=name)


def sent(reply: str, *, kind: str = "reply", message: dict[str, Any] | None = None) -> SentReply:
    return SentReply(
        reply_wamid=reply,
        inbound_wamid=WAMID,
        slot=0,
        kind=kind,
        phone_number_id=PNID,
        recipient={"to": NUMBER},
        message=message or {"type": "text", "text": {"body": "Hello Sheena!"}},
        decision="rule:greeting" if kind == "reply" else "late-131047",
        sent_at=T0 + 2,
        inbound_at=T0,
        original="wamid.OUT1=" if kind != "reply" else None,
        generation=1 if kind != "reply" else 0,
    )


def a_late_131047_followed_by_the_template(ledger: DynamoDbLedger) -> None:
    ledger.begin(WAMID, now=T0 + 1, lease_until=T0 + 30, claim_slot=0, enqueued_at=None)
    ledger.record_sent(sent("wamid.OUT1="), claim_next=None, finished=Finished("replied"))
    ledger.record_status(StatusWrite("wamid.OUT1=", "sent", T0 + 3))
    ledger.record_status(
        StatusWrite(
            "wamid.OUT1=",
            "failed",
            T0 + 5,
            error_code="131047",
            error_class="recipient",
            follow_up_owner="sqs-1",
            claim_first_attempt=True,
        )
    )
    template = {"type": "template", "template": {"name": "hello_world", "language": {}}}
    ledger.record_follow_up(sent("wamid.OUT2=", kind="fallback", message=template))
    ledger.record_status(StatusWrite("wamid.OUT2=", "read", T0 + 9))
    ledger.record_status(StatusWrite("wamid.OUT2=", "delivered", T0 + 7))


def log_files(tmp_path: Path) -> trace.LogFiles:
    ingest, consumer = tmp_path / "ingest.log", tmp_path / "consumer.log"
    ingest.write_text(
        json.dumps(
            {
                "level": "INFO",
                "message": "delivery queued",
                "timestamp": "2026-11-25 09:00:00,120+0000",
                "queued": 2,
                "wamids": ["wamid.OTHER", WAMID],
                "message_types": {"text": 2},
                "phone_number_ids": [PNID],
            }
        )
        + "\n"
        + json.dumps({"message": "delivery queued", "queued": 1, "wamids": ["wamid.OTHER"]})
        + "\n",
        encoding="utf-8",
    )
    consumer.write_text(
        "not json\n"
        + json.dumps(
            {
                "message": "record done",
                "timestamp": "2026-11-25 09:00:01,500+0000",
                "wamid": WAMID,
                "result": "replied",
                "decision": "rule:greeting",
                "read_receipt": "sent",
                "message_type": "text",
                "sender": "*******1234",
                "reply_type": "text",
                "reply_wamid": "wamid.OUT1=",
            }
        )
        + "\n"
        + json.dumps(
            {
                "message": "reply failed after it was sent",
                "timestamp": "2026-11-25 09:00:06,000+0000",
                "wamid": WAMID,
                "reply_wamid": "wamid.OUT1=",
                "result": "status",
                "status": "failed",
                "previous_state": "sent",
                "reply_state": "failed",
                "error_code": "131047",
                "follow_up": "sent",
                "follow_up_kind": "fallback",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return trace.LogFiles(ingest=ingest, consumer=consumer)


def test_the_story_of_a_message_whose_reply_failed_late_is_told_masked(
    table: str, tmp_path: Path
) -> None:
    ledger = DynamoDbLedger(dynamodb(), table)
    a_late_131047_followed_by_the_template(ledger)
    store = trace.DynamoDbItems(dynamodb(), table)

    found = trace.trace(WAMID, store, log_files(tmp_path))
    out = io.StringIO()
    trace.render(found, out)
    text = out.getvalue()

    lines = text.splitlines()
    assert lines[0] == f"Message {WAMID}"
    assert "ingest    received and queued (one delivery of 2 message(s))" in lines[1]
    assert (
        "replied (rule:greeting); text from *******1234; read receipt sent; reply text wamid.OUT1="
        in lines[2]
    )
    assert "status failed of reply wamid.OUT1=: sent -> failed, error 131047" in lines[3]
    assert "ledger: done; outcome replied; own failed attempts 0" in text
    assert "dead-letter queue: not dead-lettered" in text
    assert f"reply 1: wamid.OUT1= (reply, text) to *******1234 from number {PNID}" in text
    assert "late failure 131047 (recipient)" in text
    assert "followed up: fallback wamid.OUT2=" in text
    assert "fallback: wamid.OUT2= (fallback, template hello_world)" in text
    assert "delivered  2026-11-25T09:00:07Z  (7 s after the customer's message)" in text
    assert text.index("delivered  2026-11-25T09:00:07Z") < text.index("read       2026")
    assert "now: read" in text
    assert NUMBER not in text
    assert "Hello Sheena" not in text  # what was said is never shown
    document = trace.to_json(found)
    assert NUMBER not in json.dumps(document)
    [reply] = document["replies"]
    assert (reply["state"], reply["failed_code"]) == ("failed", "131047")
    assert reply["followed_up_by"]["state"] == "read"
    assert reply["followed_up_by"]["kind"] == "fallback"


def test_a_dead_lettered_message_says_so_and_an_unknown_one_says_nothing_is_known(
    table: str,
) -> None:
    ledger = DynamoDbLedger(dynamodb(), table)
    ledger.begin(WAMID, now=T0, lease_until=T0 + 30, claim_slot=0, enqueued_at=None)
    ledger.record_failure(
        WAMID,
        FailedAttempt(10, "131000", "transient", T0 + 600, release_slot=0, dead_lettered=True),
    )
    store = trace.DynamoDbItems(dynamodb(), table)

    dead, unknown = io.StringIO(), io.StringIO()
    trace.render(trace.trace(WAMID, store, None), dead)
    trace.render(trace.trace("wamid.NOBODY", store, None), unknown)

    assert "dead-letter queue: put there 2026-11-25T09:10:00Z after 10 attempts" in dead.getvalue()
    assert "last error 131000 (transient)" in dead.getvalue()
    assert "no reply recorded" in dead.getvalue()
    assert "nothing known" in unknown.getvalue()


class FakeLogs:
    def __init__(self, rows: list[list[dict[str, str]]]) -> None:
        self.rows = rows
        self.started: list[dict[str, Any]] = []

    def start_query(self, **request: Any) -> dict[str, str]:
        self.started.append(request)
        return {"queryId": "q-1"}

    def get_query_results(self, queryId: str) -> dict[str, Any]:
        return {"status": "Complete", "results": self.rows}


def test_deployed_logs_come_from_both_functions_log_groups_in_one_insights_query() -> None:
    logs = FakeLogs(
        [
            [
                {"field": "@timestamp", "value": "2026-11-25 09:00:00.120"},
                {"field": "@log", "value": "123456789012:/aws/lambda/relay-ingest"},
                {"field": "message", "value": "delivery queued"},
                {"field": "queued", "value": "1"},
                {"field": "@ptr", "value": "x"},
            ]
        ]
    )
    source = trace.LogsInsights(
        logs,
        {"ingest": "/aws/lambda/relay-ingest", "consumer": "/aws/lambda/relay-consumer"},
        sleep=lambda _: None,
    )

    [line] = source.lines(WAMID)

    [request] = logs.started
    assert request["logGroupNames"] == ["/aws/lambda/relay-ingest", "/aws/lambda/relay-consumer"]
    assert f'| filter wamid = "{WAMID}" or (message = "delivery queued"' in request["queryString"]
    assert f'@message like "{WAMID}"' in request["queryString"]
    assert line.function == "ingest"
    assert line.fields == {"message": "delivery queued", "queued": "1"}


def test_the_cli_finds_the_table_from_the_stack_outputs(
    aws: str, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a_late_131047_followed_by_the_template(DynamoDbLedger(dynamodb(), table))
    stack = f"relay-{uuid.uuid4().hex[:8]}"
    outputs = {
        OUTPUT_TABLE_NAME: table,
        OUTPUT_INGEST_LOG_GROUP: "/aws/lambda/relay-ingest",
        OUTPUT_CONSUMER_LOG_GROUP: "/aws/lambda/relay-consumer",
    }
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto_client("cloudformation", aws).create_stack(
        StackName=stack, TemplateBody=json.dumps(template)
    )
    out = io.StringIO()

    code = trace.main([WAMID, "--stack-name", stack, "--region", TEST_REGION, "--no-logs"], out=out)

    assert code == 0
    assert "followed up: fallback wamid.OUT2=" in out.getvalue()
    assert trace.main(["wamid.x", "--stack-name", "no-such", "--region", TEST_REGION]) == 1
    assert "error:" in capsys.readouterr().err


def test_a_local_trace_finds_make_run_by_its_state_file(
    aws: str,
    table: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a_late_131047_followed_by_the_template(DynamoDbLedger(dynamodb(), table))
    files = log_files(tmp_path)
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path))
    assert trace.main([WAMID, "--local"]) == 1
    assert "no `make run` is running" in capsys.readouterr().err
    write_state(
        tmp_path,
        PipelineState(
            pid=os.getpid(),
            webhook_url="http://127.0.0.1:3000/webhook",
            aws_endpoint=aws,
            region=TEST_REGION,
            secret_id="s",
            queue_url="q",
            dlq_url="d",
            consumer_log=str(files.consumer_log),
            table_name=table,
            ingest_log=str(files.ingest_log),
        ),
    )
    out = io.StringIO()

    assert trace.main([WAMID, "--local"], out=out) == 0

    assert "received and queued (one delivery of 2 message(s))" in out.getvalue()
    assert "followed up: fallback wamid.OUT2=" in out.getvalue()
