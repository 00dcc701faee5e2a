"""A reply handler in the local pipeline: `make run` picks up REPLY_HANDLER from the environment
and re-imports it when its file changes; and the consumer's execution environment (the poller
child process `make run` starts) killed with SIGKILL between two sends of one answer never
sends a reply twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.common.names import (
    CONSUMER_SERVICE,
    DEFAULT_METRICS_NAMESPACE,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_GRAPH_API_URL,
    ENV_IDEMPOTENCY_TABLE,
    ENV_METRICS_NAMESPACE,
    ENV_QUEUE_URL,
    ENV_REPLY_HANDLER,
    ENV_SECRET_ID,
    ENV_SERVICE_NAME,
)
from local_pipeline.config import AWS_ENV_TO_DROP, LOCAL_AWS_ENV
from local_pipeline.console import short_id
from local_pipeline.emulator import LocalResources, aws_client, create_resources
from local_pipeline.fake_graph import Answer, FakeGraphApi, RecordedRequest, hang
from local_pipeline.poller import ENV_LOG_FILE
from local_pipeline.samples import encode, message_delivery, new_wamid
from tests.e2e.pipeline_process import ACCESS_TOKEN, REPO_ROOT, PipelineProcess
from tests.unit.consumer.builders import queued_body, wamid_of

pytestmark = pytest.mark.e2e

BOT = """
def handle(event):
    return {{"type": "text", "text": {{"body": "{answer}"}}}}
"""


def test_make_run_uses_the_handler_in_the_environment_and_reloads_it(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    bot = code / "e2e_bot.py"
    bot.write_text(BOT.format(answer="first version"))
    pipeline = PipelineProcess(
        tmp_path / "state", REPLY_HANDLER="e2e_bot:handle", PYTHONPATH=str(code)
    ).start()
    try:
        first = _ask(pipeline, "16505550301")
        bot.write_text(BOT.format(answer="second version"))
        later = time.time() + 5  # a new mtime even on a coarse file-system clock
        os.utime(bot, (later, later))
        second = _ask(pipeline, "16505550302")
    finally:
        pipeline.interrupt()

    assert (first, second) == ("first version", "second version")
    assert "reply handler  e2e_bot:handle" in pipeline.output()


def _ask(pipeline: PipelineProcess, sender: str) -> str:
    wamid = new_wamid("e2e")
    message = {"id": wamid, "type": "text", "text": {"body": "hello"}}
    status, _ = pipeline.post(encode(message_delivery(message, sender=sender)))
    assert status == 200
    calls = pipeline.wait_for(
        lambda calls: any(
            c["kind"] == "send" and (c["json"].get("context") or {}).get("message_id") == wamid
            for c in calls
        )
    )
    assert calls is not None, pipeline.output()
    (reply,) = [c for c in calls if (c["json"].get("context") or {}).get("message_id") == wamid]
    return str(reply["json"]["text"]["body"])


# --- SIGKILL between two sends --------------------------------------------------------------


@pytest.fixture
def local_aws(moto_endpoint: str) -> LocalResources:
    # A short visibility timeout: the killed run's record is back within 2 s.
    return create_resources(
        moto_endpoint,
        app_secret="s",
        verify_token="v",
        access_token=ACCESS_TOKEN,
        visibility_timeout_seconds=2,
        name_suffix=uuid.uuid4().hex[:10],
    )


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi(expected_token=ACCESS_TOKEN) as fake:
        yield fake


def _consumer_process(
    resources: LocalResources, graph: FakeGraphApi, log: Path
) -> subprocess.Popen[str]:
    """`make run`'s consumer execution environment, as run.py starts it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    for name in AWS_ENV_TO_DROP:
        env.pop(name, None)
    env |= {
        **LOCAL_AWS_ENV,
        "AWS_ENDPOINT_URL": resources.endpoint,
        ENV_QUEUE_URL: resources.queue_url,
        ENV_SECRET_ID: resources.secret_id,
        ENV_IDEMPOTENCY_TABLE: resources.table_name,
        ENV_DEAD_LETTER_QUEUE_URL: resources.dlq_url,
        ENV_GRAPH_API_URL: graph.url,
        ENV_SERVICE_NAME: CONSUMER_SERVICE,
        ENV_METRICS_NAMESPACE: DEFAULT_METRICS_NAMESPACE,
        ENV_REPLY_HANDLER: "tests.integration.consumer.reply_handlers:three_texts",
        ENV_LOG_FILE: str(log),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "local_pipeline.poller"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    assert ready["event"] == "ready"
    return process


def _texts(graph: FakeGraphApi) -> list[str]:
    return [str(r.json["text"]["body"]) for r in graph.sent_messages()]


def test_a_consumer_killed_between_two_sends_never_sends_a_reply_twice(
    local_aws: LocalResources, graph: FakeGraphApi, tmp_path: Path
) -> None:
    # Meta takes "two" in and the run dies before the answer comes back.
    def swallow_two(request: RecordedRequest) -> Answer | None:
        if request.kind == "send" and request.json["text"]["body"] == "two":
            return hang(20)
        return None

    graph.rule = swallow_two
    record = queued_body()
    aws_client("sqs", local_aws.endpoint).send_message(
        QueueUrl=local_aws.queue_url,
        MessageBody=record,
        MessageGroupId="conversation",
        MessageDeduplicationId=wamid_of(record).replace("=", ""),
    )
    log = tmp_path / "consumer.log"

    first = _consumer_process(local_aws, graph, log)
    assert graph.wait_for(2, kind="send", timeout=30), _texts(graph)
    first.send_signal(signal.SIGKILL)  # the execution environment dies mid-answer
    first.wait(10)
    assert _texts(graph) == ["one", "two"]
    _age_the_lease(local_aws, wamid_of(record))  # as time would, after the function's timeout

    graph.rule = None
    second = _consumer_process(local_aws, graph, log)
    try:
        assert graph.wait_for(3, kind="send", timeout=30), _texts(graph)
        item = _ledger_item(local_aws, wamid_of(record))
        deadline = time.monotonic() + 10
        while item["status"]["S"] != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
            item = _ledger_item(local_aws, wamid_of(record))
    finally:
        assert second.stdin is not None
        second.stdin.close()  # EOF: finish and exit, as make run stops it
        second.wait(15)

    assert _texts(graph) == ["one", "two", "three"]  # "two" once, though its answer was lost
    assert item["status"]["S"] == "done"
    assert set(item) >= {"sent_0", "claim_1", "sent_2"}
    assert "sent_1" not in item  # recorded as possibly sent, never sent again


def _ledger_item(resources: LocalResources, wamid: str) -> dict[str, dict[str, str]]:
    dynamodb = aws_client("dynamodb", resources.endpoint)
    item: dict[str, dict[str, str]] = dynamodb.get_item(
        TableName=resources.table_name, Key={"id": {"S": f"msg#{wamid}"}}, ConsistentRead=True
    )["Item"]
    return item


def _age_the_lease(resources: LocalResources, wamid: str) -> None:
    aws_client("dynamodb", resources.endpoint).update_item(
        TableName=resources.table_name,
        Key={"id": {"S": f"msg#{wamid}"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )


# --- one answer per burst in make run --------------------------------------------------------


def test_make_run_answers_a_burst_once_with_a_burst_window(tmp_path: Path) -> None:
    pipeline = PipelineProcess(
        tmp_path / "state", REPLY_HANDLER="examples.echo:handle", BURST_WINDOW_SECONDS="2"
    ).start()
    try:
        sender = "16505550333"
        wamids = []
        for text in ("hi", "my order", "is late"):
            wamid = new_wamid("e2e")
            message = {"id": wamid, "type": "text", "text": {"body": text}}
            status, _ = pipeline.post(encode(message_delivery(message, sender=sender)))
            assert status == 200
            wamids.append(wamid)
        calls = pipeline.wait_for(lambda calls: any(c["kind"] == "send" for c in calls), timeout=30)
        assert calls is not None, pipeline.output()
        calls = pipeline.wait_quiet(seconds=3)  # nothing more comes for the burst
    finally:
        pipeline.interrupt()

    sends = [c for c in calls if c["kind"] == "send"]
    assert [c["json"]["text"]["body"] for c in sends] == ["You said: hi / my order / is late"]
    assert sends[0]["json"]["context"] == {"message_id": wamids[-1]}
    reads = [c["json"]["message_id"] for c in calls if c["kind"] == "read"]
    assert reads == [wamids[-1]]


def test_make_run_shows_the_events_a_subscriber_would_get(tmp_path: Path) -> None:
    pipeline = PipelineProcess(tmp_path / "state", EVENT_BUS_NAME="relay-local").start()
    try:
        wamid = new_wamid("e2e")
        message = {"id": wamid, "type": "text", "text": {"body": "hello"}}
        status, _ = pipeline.post(encode(message_delivery(message, sender="16505550404")))
        assert status == 200
        deadline = time.monotonic() + 30
        while "reply.sent" not in pipeline.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        pipeline.interrupt()

    lines = [line for line in pipeline.output().splitlines() if " event " in f" {line} "]
    tag = short_id(wamid)
    assert any(f"message.received msg {tag}" in line for line in lines), pipeline.output()
    assert any(f"reply.sent msg {tag} (slot 0)" in line for line in lines), pipeline.output()
    assert "events         bus relay-local" in pipeline.output()
