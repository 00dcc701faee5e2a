"""`make run` end to end: the real ingest and consumer handlers, moto, the fake Graph API, driven
over real HTTP with signed webhooks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.domain.whatsapp.queued_record import QueuedRecord
from functions.domain.whatsapp.webhook import parse_delivery
from local_pipeline.console import short_id
from local_pipeline.run import INGEST_ENVIRONMENTS
from local_pipeline.samples import encode, message_delivery, new_wamid, status_delivery
from local_pipeline.state import running_pipeline, state_file
from tests.e2e.pipeline_process import (
    ACCESS_TOKEN,
    APP_SECRET,
    REPO_ROOT,
    START_TIMEOUT_SECONDS,
    VERIFY_TOKEN,
    Calls,
    PipelineProcess,
    http,
    pipeline_env,
    processes_with_env,
)
from tests.events.builders import EVENTS

pytestmark = pytest.mark.e2e


# Session scope: one `make run` for every test here, even when xdist hands this module's tests
# to its worker in several chunks (a module-scoped fixture would restart between them).
@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineProcess]:
    running = PipelineProcess(tmp_path_factory.mktemp("make-run")).start()
    yield running
    running.interrupt()


def text_webhook(sender: str, text: str = "hello there") -> tuple[str, bytes]:
    wamid = new_wamid("e2e")
    message = {"id": wamid, "type": "text", "text": {"body": text}}
    return wamid, encode(message_delivery(message, sender=sender))


def reads(calls: Calls, wamid: str) -> Calls:
    return [
        c
        for c in calls
        if c["kind"] == "read" and c["answer"] == "ok" and c["json"]["message_id"] == wamid
    ]


def replies(calls: Calls, wamid: str, *, answer: str = "ok") -> Calls:
    return [
        c
        for c in calls
        if c["kind"] == "send"
        and c["answer"] == answer
        and (c["json"].get("context") or {}).get("message_id") == wamid
    ]


def test_handshake_echoes_the_challenge(pipeline: PipelineProcess) -> None:
    url = f"{pipeline.webhook_url}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"
    status, headers, body = http("GET", url + "&hub.challenge=1158201444")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"1158201444"
    wrong, _, _ = http(
        "GET",
        f"{pipeline.webhook_url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
    )
    assert wrong == 403


def test_signed_post_gets_a_read_receipt_and_a_threaded_reply(pipeline: PipelineProcess) -> None:
    # Given a signed text message from a user
    sender = "16505550101"
    wamid, body = text_webhook(sender)
    # When it is posted to the printed URL
    started = time.monotonic()
    status, answer = pipeline.post(body)
    assert (status, json.loads(answer)) == (200, {"queued": 1})
    calls = pipeline.wait_for(lambda calls: bool(reads(calls, wamid) and replies(calls, wamid)))
    elapsed = time.monotonic() - started
    # Then the message is marked read and answered in its thread, from the receiving number
    assert calls is not None, pipeline.output()
    [reply] = replies(calls, wamid)
    assert reply["json"]["to"] == sender
    assert reply["path"] == f"/{pipeline.info['graph_api_version']}/106540352242922/messages"
    headers = {name.lower(): value for name, value in reply["headers"].items()}
    assert headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    # And the console tells the story with a masked number and no phone in clear
    deadline = time.monotonic() + 5
    while "replied" not in pipeline.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    output = pipeline.output()
    assert f"msg {short_id(wamid)} text from *******0101" in output
    assert f"msg {short_id(wamid)} marked read" in output
    assert f"in thread of msg {short_id(wamid)}" in output
    assert sender not in output
    print(f"signed POST -> read receipt + reply: {elapsed:.2f} s")


def test_a_bad_signature_is_refused_and_nothing_is_queued(pipeline: PipelineProcess) -> None:
    forged_wamid, forged = text_webhook("16505550102")
    status, answer = pipeline.post(forged, signature="sha256=" + "0" * 64)
    assert status == 401
    assert json.loads(answer)["error"] == "invalid_signature"
    # A genuine message posted afterwards is answered; the forged one never reaches Meta
    wamid, body = text_webhook("16505550102")
    assert pipeline.post(body)[0] == 200
    calls = pipeline.wait_for(lambda calls: bool(replies(calls, wamid)))
    assert calls is not None
    assert not [c for c in calls if forged_wamid in json.dumps(c["json"])]


def test_a_body_that_is_not_utf8_reaches_the_handler_base64_encoded(
    pipeline: PipelineProcess,
) -> None:
    # Signed bytes that are not UTF-8: the gateway base64-encodes them, ingest decodes them,
    # verifies the signature over the exact bytes and then refuses a body that is not JSON.
    status, answer = pipeline.post(b"\xff\xfe\x00not json")
    assert status == 400
    assert json.loads(answer)["error"] == "invalid_payload"


def test_duplicate_deliveries_get_one_reply(pipeline: PipelineProcess) -> None:
    wamid, body = text_webhook("16505550103")
    # Meta redelivers at once, and again after the reply went out
    assert pipeline.post(body)[0] == 200
    assert pipeline.post(body)[0] == 200
    assert pipeline.wait_for(lambda calls: bool(replies(calls, wamid))) is not None
    assert pipeline.post(body)[0] == 200
    calls = pipeline.wait_quiet()
    assert len(replies(calls, wamid)) == 1


def test_statuses_are_acknowledged_and_never_answered(pipeline: PipelineProcess) -> None:
    ours = new_wamid("outbound")
    status, answer = pipeline.post(encode(status_delivery(ours, "read")))
    assert (status, json.loads(answer)) == (200, {"queued": 0})
    calls = pipeline.wait_quiet(0.5)
    assert not [c for c in calls if ours in json.dumps(c["json"])]


def username_webhook(name: str) -> tuple[str, bytes, dict[str, Any]]:
    """A stored payload shaped like Meta's documentation, with a fresh wamid (this pipeline
    lives for the whole session): the bytes as Meta would send them."""
    document = json.loads((EVENTS / "webhooks" / f"{name}.json").read_bytes())
    message = document["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = new_wamid("bsuid")
    return message["id"], encode(document), message


def test_a_user_known_only_by_a_username_gets_a_threaded_reply_at_the_bsuid(
    pipeline: PipelineProcess,
) -> None:
    # Given a user who adopted a username: no `from`, no `wa_id`, only the BSUID
    wamid, body, message = username_webhook("username_text_bsuid_only")
    bsuid = message["from_user_id"]
    assert "from" not in message
    # When Meta delivers their message
    status, answer = pipeline.post(body)
    assert (status, json.loads(answer)) == (200, {"queued": 1})
    calls = pipeline.wait_for(lambda calls: bool(reads(calls, wamid) and replies(calls, wamid)))
    # Then it is read and answered in its thread, at the BSUID (`recipient`, never `to`), from
    # the number that received it, with the contact's name filled in
    assert calls is not None, pipeline.output()
    [reply] = replies(calls, wamid)
    assert reply["json"]["recipient"] == bsuid
    assert "to" not in reply["json"]
    assert reply["json"]["context"] == {"message_id": wamid}
    assert reply["path"] == f"/{pipeline.info['graph_api_version']}/106540352242922/messages"
    # And the username change that follows is read, not answered, and the conversation goes on
    change_wamid, change, _ = username_webhook("username_system_user_changed_user_id")
    assert pipeline.post(change)[0] == 200
    assert pipeline.wait_for(lambda calls: bool(reads(calls, change_wamid))) is not None
    next_wamid, next_body, _ = username_webhook("username_text_bsuid_only")
    assert pipeline.post(next_body)[0] == 200
    assert pipeline.wait_for(lambda calls: bool(replies(calls, next_wamid))) is not None
    assert replies(pipeline.wait_quiet(0.5), change_wamid) == []
    assert bsuid not in pipeline.output()


def test_a_rate_limited_reply_is_retried_until_it_goes_out(pipeline: PipelineProcess) -> None:
    # Given Meta answers the next send with 130429 (throughput limit)
    pipeline.wait_quiet(0.5)
    pipeline.script_graph("send", {"type": "meta_error", "code": 130429})
    wamid, body = text_webhook("16505550104")
    # When a message arrives
    assert pipeline.post(body)[0] == 200
    # Then the refused reply is retried after the consumer's backoff and goes out once
    calls = pipeline.wait_for(lambda calls: bool(replies(calls, wamid)), timeout=60)
    assert calls is not None, pipeline.output()
    assert len(replies(calls, wamid, answer="meta_error")) == 1
    assert len(replies(pipeline.wait_quiet(), wamid)) == 1
    assert f"msg {short_id(wamid)} text from *******0104 failed attempt 1: retry in" in (
        pipeline.output()
    )


def traced(pipeline: PipelineProcess, wamid: str) -> dict[str, Any]:
    """`python -m tools.trace <wamid> --local --json` (it finds this pipeline by its state)."""
    done = subprocess.run(
        [sys.executable, "-m", "tools.trace", wamid, "--local", "--json"],
        cwd=REPO_ROOT,
        env=pipeline_env(pipeline.state_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def wait_for_trace(
    pipeline: PipelineProcess, wamid: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found = traced(pipeline, wamid)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_fake_reports_each_reply_sent_delivered_read_and_the_ledger_follows(
    pipeline: PipelineProcess,
) -> None:
    wamid, body = text_webhook("16505550106")
    assert pipeline.post(body)[0] == 200

    found = wait_for_trace(
        pipeline, wamid, lambda t: bool(t["replies"]) and t["replies"][0]["state"] == "read"
    )

    [reply] = found["replies"]
    assert reply["state"] == "read", pipeline.output()
    assert set(reply["statuses"]) == {"sent", "delivered", "read"}
    assert reply["recipient"] == "*******0106"
    assert (
        f"reply {short_id(reply['reply_wamid'])} of msg {short_id(wamid)}: delivered -> read"
        in (pipeline.output())
    )


def test_a_late_131047_gets_one_template_and_make_trace_tells_the_story(
    pipeline: PipelineProcess,
) -> None:
    # Given Meta accepts the next send, then reports it failed with 131047 - twice
    pipeline.wait_quiet(0.5)
    pipeline.script_graph("send", {"type": "late_failure", "code": 131047, "repeat": 2})
    wamid, body = text_webhook("16505550107")
    # When a message arrives
    assert pipeline.post(body)[0] == 200
    # Then its reply is followed by exactly one template, threaded on the message
    calls = pipeline.wait_for(
        lambda calls: any(c["json"]["type"] == "template" for c in replies(calls, wamid))
    )
    assert calls is not None, pipeline.output()
    found = wait_for_trace(
        pipeline,
        wamid,
        lambda t: (
            bool(t["replies"]) and (t["replies"][0]["followed_up_by"] or {}).get("state") == "read"
        ),
    )
    assert [c["json"]["type"] for c in replies(pipeline.wait_quiet(), wamid)] == [
        "text",
        "template",
    ]
    [reply] = found["replies"]
    assert (reply["state"], reply["failed_code"]) == ("failed", "131047")
    assert reply["followed_up_by"]["kind"] == "fallback"
    # And `make trace` tells that story, masked
    told = subprocess.run(
        # -o: the venv is the one running these tests; never reinstall it from a test
        ["make", "-s", "-o", ".venv/.installed", "trace", f"WAMID={wamid}", "ARGS=--local"],
        cwd=REPO_ROOT,
        env={**pipeline_env(pipeline.state_dir), "PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert told.returncode == 0, told.stdout + told.stderr
    text = told.stdout
    assert "received and queued (one delivery of 1 message(s))" in text
    assert "text from *******0107" in text
    assert "read receipt sent" in text
    assert "late failure 131047 (recipient)" in text
    assert "fallback: " in text
    assert "template hello_world" in text
    assert "now: read" in text
    assert "16505550107" not in text


def test_make_demo_finds_the_pipeline_and_its_secret_and_passes(
    pipeline: PipelineProcess,
) -> None:
    # Given only where `make run` keeps its state: no PORT (it picked a free one), and not the
    # app secret it was started with (not the default)
    env = {
        key: value
        for key, value in pipeline_env(pipeline.state_dir).items()
        if key != "PORT" and not key.startswith("WHATSAPP_")
    }
    demo = subprocess.run(
        [sys.executable, "-m", "local_pipeline.demo"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "demo PASSED" in demo.stdout


def test_port_in_use_is_a_clear_error_not_a_traceback(
    pipeline: PipelineProcess, tmp_path: Path
) -> None:
    port = pipeline.webhook_url.split(":")[2].split("/")[0]
    second = PipelineProcess(tmp_path, PORT=port).start(wait=False)
    assert second.wait_exit() == 1
    assert f"port {port} on 127.0.0.1 is already in use" in second.output()
    assert "Traceback" not in second.stderr


def test_the_state_file_says_where_the_pipeline_is_and_holds_no_secret(
    pipeline: PipelineProcess,
) -> None:
    text = state_file(pipeline.state_dir).read_text(encoding="utf-8")
    state = running_pipeline(pipeline.state_dir)
    assert state.webhook_url == pipeline.webhook_url
    assert state.aws_endpoint == pipeline.info["aws_endpoint"]
    assert state.dlq_url == pipeline.info["dlq_url"]
    for secret in (APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN):
        assert secret not in text


def test_the_table_lives_in_a_moto_of_its_own_and_the_state_file_says_where(
    pipeline: PipelineProcess,
) -> None:
    from local_pipeline.emulator import aws_client

    # Given the running pipeline's two emulators
    state = running_pipeline(pipeline.state_dir)
    queues_at, table_at = pipeline.info["aws_endpoint"], pipeline.info["dynamodb_endpoint"]

    # Then the table is on DynamoDB's, the queues on the other, and the state file says so
    assert table_at != queues_at
    assert state.dynamodb_endpoint == table_at
    table = pipeline.info["table_name"]
    assert table in aws_client("dynamodb", table_at).list_tables()["TableNames"]
    assert table not in aws_client("dynamodb", queues_at).list_tables()["TableNames"]


def test_inspect_dlq_and_redrive_work_against_make_run(pipeline: PipelineProcess) -> None:
    # Given a message the consumer answered, whose record then lands in the DLQ (moto)
    from local_pipeline.emulator import aws_client

    wamid, body = text_webhook("16505550106", text="hi, please keep this private")
    assert pipeline.post(body)[0] == 200
    assert pipeline.wait_for(lambda calls: bool(replies(calls, wamid))) is not None
    record = QueuedRecord(
        received=parse_delivery(json.loads(body)).messages[0],
        received_at=datetime.now(UTC),
    )
    aws_client("sqs", pipeline.info["aws_endpoint"]).send_message(
        QueueUrl=pipeline.info["dlq_url"],
        MessageBody=record.to_json(),
        MessageGroupId="e2e-dlq",
        MessageDeduplicationId=uuid.uuid4().hex,
    )
    env = pipeline_env(pipeline.state_dir)

    # When the operator runs `make inspect-dlq` with nothing but the state directory
    inspect = subprocess.run(
        [sys.executable, "-m", "tools.dlq", "inspect", "--why"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it lists the local DLQ, masked, and says where the consumer's log is
    assert inspect.returncode == 0, inspect.stderr
    assert "Local pipeline (`make run`" in inspect.stdout
    assert f"wamid={wamid}" in inspect.stdout
    assert "from=*******0106" in inspect.stdout
    assert "16505550106" not in inspect.stdout
    assert "keep this private" not in inspect.stdout
    assert "What the consumer logged" in inspect.stdout
    assert '"result": "replied"' in inspect.stdout

    # ...and `make redrive` says in one line why it cannot, and what to do
    redrive = subprocess.run(
        [sys.executable, "-m", "tools.dlq", "redrive"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert redrive.returncode == 2
    [line] = redrive.stderr.splitlines()
    assert "does not implement StartMessageMoveTask" in line
    assert "Traceback" not in redrive.stderr


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    # Given a running pipeline (its own, so this test can watch it go)
    marker_dir = tmp_path / f"state-{uuid.uuid4().hex[:8]}"
    running = PipelineProcess(marker_dir).start()
    marker = f"LOCAL_STATE_DIR={marker_dir}"
    try:
        # make run, moto's two servers (DynamoDB apart), the consumer worker and the ingest's
        # execution environments
        assert len(processes_with_env(marker)) == 4 + INGEST_ENVIRONMENTS
    finally:
        # When Ctrl-C (also when the count is wrong: a failed test leaves nothing running)
        exit_code = running.interrupt()
    # Then it exits cleanly and leaves no process behind
    assert exit_code == 0, running.stderr
    assert "stopped:" in running.output()
    assert processes_with_env(marker) == []
    assert not state_file(marker_dir).exists()  # `make demo` will not look for it
    assert "Traceback" not in running.stderr


def test_a_closed_terminal_still_stops_everything(tmp_path: Path) -> None:
    # Given a running pipeline whose terminal then goes away (its console's reader is gone)
    marker_dir = tmp_path / f"state-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(marker_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "local_pipeline.run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    marker = f"LOCAL_STATE_DIR={marker_dir}"
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for line in process.stdout:
            if line.startswith("Ready.") or time.monotonic() > deadline:
                break
        assert state_file(marker_dir).exists()
        process.stdout.close()

        # When the terminal's hang-up arrives
        process.send_signal(signal.SIGHUP)

        # Then it stops everything it started, though it cannot say so
        assert process.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while processes_with_env(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with_env(marker) == []
        assert not state_file(marker_dir).exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in processes_with_env(marker):
            os.kill(pid, signal.SIGKILL)


def test_broken_reply_rules_hold_ready_until_the_file_is_fixed(tmp_path: Path) -> None:
    # Given REPLY_RULES_PATH naming a rules file whose first rule has an impossible reply
    from functions.consumer.wiring import DEFAULT_RULES_PATH

    rules = tmp_path / "rules.json"
    document = json.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    assert document["rules"][0]["name"] == "greeting"
    document["rules"][0]["reply"] = {"type": "carrier-pigeon"}
    rules.write_text(json.dumps(document), encoding="utf-8")

    # When `make run` starts
    running = PipelineProcess(tmp_path / "state", REPLY_RULES_PATH=str(rules)).start(wait=False)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while "not Ready" not in running.output() and time.monotonic() < deadline:
            time.sleep(0.1)

        # Then it says, in one line, which rule is wrong and how, and does not say Ready
        [line] = [line for line in running.output().splitlines() if "not Ready" in line]
        assert "rule 'greeting'" in line
        assert "carrier-pigeon" in line
        assert not any(line.startswith("Ready.") for line in running.output().splitlines())
        assert not state_file(tmp_path / "state").exists()

        # ...and once the file is fixed it goes on: Ready, and the pipeline answers
        rules.write_text(DEFAULT_RULES_PATH.read_text(encoding="utf-8"), encoding="utf-8")
        running.wait_ready()
        assert "reply rules OK again" in running.output()
        assert state_file(tmp_path / "state").exists()
    finally:
        assert running.interrupt() == 0
    assert "Traceback" not in running.stderr + running.output()


def test_graph_api_url_sends_the_consumer_elsewhere(tmp_path: Path) -> None:
    # Given a Graph API of our own (standing in for the real one) named by GRAPH_API_URL
    from local_pipeline.fake_graph import FakeGraphApi

    with FakeGraphApi(expected_token=ACCESS_TOKEN) as external:
        running = PipelineProcess(tmp_path, GRAPH_API_URL=external.url).start()
        try:
            # When a message arrives
            assert running.info["fake_graph"] is False
            assert running.info["graph_api_url"] == external.url
            wamid, body = text_webhook("16505550105")
            assert running.post(body)[0] == 200
            # Then the consumer talked to that API, with the configured token
            assert external.wait_for(2, timeout=30), running.output()
            assert [r.kind for r in external.requests] == ["read", "send"]
            assert external.sent_messages()[0].json["context"] == {"message_id": wamid}
        finally:
            assert running.interrupt() == 0
