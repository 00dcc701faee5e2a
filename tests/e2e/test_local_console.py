"""The console's lines, the banner's signed curl and the local settings: no network at all."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import pytest

from functions.domain.ingest.signature import signature_matches
from local_pipeline.config import DEFAULT_PORT, LocalConfig, LocalConfigError
from local_pipeline.console import Console, short_id
from local_pipeline.gateway import Exchange
from local_pipeline.samples import encode, message_delivery, signed_curl, text_message

pytestmark = pytest.mark.unit

SENDER = "16505559876"


def console() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(stream, color=False), stream


def exchange(body: bytes, status: int = 200, response: bytes = b'{"queued":1}') -> Exchange:
    return Exchange(
        method="POST",
        path="/webhook",
        status=status,
        request_body=body,
        response_body=response,
        duration_ms=12.0,
        received_at=0.0,
    )


def test_signed_curl_signs_the_exact_body_it_sends() -> None:
    body = encode(message_delivery(text_message("caf\u00e9 \u2615")))
    command = signed_curl("http://127.0.0.1:3000/webhook", body, "s3cret")
    words = shlex.split(command)
    header = words[words.index("-H", words.index("-H") + 1) + 1]
    sent = words[words.index("--data-binary") + 1].encode()
    assert sent == body
    assert header.startswith("X-Hub-Signature-256: ")
    assert signature_matches(sent, header.split(": ", 1)[1], "s3cret")
    assert "\\u00e9" in sent.decode()  # ASCII-escaped, the way Meta sends it


def test_received_and_queued_lines_mask_the_sender_and_hide_the_text() -> None:
    out, stream = console()
    message = text_message("my secret plans", wamid="wamid.one")
    out.exchange(exchange(encode(message_delivery(message, sender=SENDER))))
    text = stream.getvalue()
    assert "received  POST /webhook -> 200 1 message(s), 0 status(es)" in text
    assert f"msg {short_id('wamid.one')} text from *******9876" in text
    assert SENDER not in text
    assert "secret plans" not in text


def test_refused_requests_show_the_error_code() -> None:
    out, stream = console()
    out.exchange(exchange(b"{}", status=401, response=b'{"error":"invalid_signature"}'))
    assert "POST /webhook -> 401 invalid_signature" in stream.getvalue()


def test_graph_calls_become_read_and_replied_lines() -> None:
    out, stream = console()
    out.graph_call({"kind": "read", "answer": "ok", "json": {"message_id": "wamid.one"}})
    out.graph_call(
        {
            "kind": "send",
            "answer": "ok",
            "json": {"type": "text", "to": SENDER, "context": {"message_id": "wamid.one"}},
        }
    )
    out.graph_call(
        {
            "kind": "send",
            "answer": "meta_error",
            "json": {"type": "reaction", "to": SENDER, "reaction": {"message_id": "wamid.two"}},
        }
    )
    lines = stream.getvalue().splitlines()
    assert f"msg {short_id('wamid.one')} marked read" in lines[0]
    assert f"text to *******9876 in thread of msg {short_id('wamid.one')}" in lines[1]
    assert f"in thread of msg {short_id('wamid.two')} got meta_error" in lines[2]
    assert SENDER not in stream.getvalue()


def test_batch_results_become_retry_and_dead_letter_lines() -> None:
    out, stream = console()
    record = {"wamid": "wamid.one", "message_type": "text", "sender": "*******9876"}
    out.worker_event(
        {
            "event": "batch",
            "max_receive_count": 8,
            "records": [
                {**record, "succeeded": False, "receive_count": 1, "visibility_timeout": 7},
                {**record, "succeeded": False, "receive_count": 8, "visibility_timeout": 7},
                {**record, "succeeded": True, "receive_count": 2},
            ],
        }
    )
    lines = stream.getvalue().splitlines()
    assert "failed attempt 1: retry in 7 s" in lines[0]
    assert "failed attempt 8/8: moving to the dead-letter queue" in lines[1]
    assert len(lines) == 2  # a record that succeeded is told by its outcome line


def test_consumer_warnings_are_one_line_without_redundant_fields() -> None:
    out, stream = console()
    out.worker_event(
        {
            "event": "log",
            "level": "WARNING",
            "message": "record will be retried",
            "fields": {"wamid": "wamid.one", "error_code": 130429, "sqs_message_id": "x"},
        }
    )
    line = stream.getvalue()
    assert f"msg {short_id('wamid.one')} record will be retried error_code=130429" in line
    assert "sqs_message_id" not in line


def outcome(result: str, **fields: object) -> dict[str, object]:
    return {
        "event": "log",
        "level": "INFO",
        "message": "record done",
        "fields": {"wamid": "wamid.one", "result": result, **fields},
    }


def test_outcomes_say_how_each_record_ended() -> None:
    out, stream = console()
    out.worker_event(outcome("no_reply", decision="type:reaction"))
    out.worker_event(outcome("duplicate"))
    lines = stream.getvalue().splitlines()
    assert f"outcome   msg {short_id('wamid.one')} no_reply (type:reaction)" in lines[0]
    assert f"msg {short_id('wamid.one')} duplicate" in lines[1]


def test_replied_outcome_shows_only_when_the_graph_calls_are_not_visible() -> None:
    out, stream = console()
    out.worker_event(outcome("replied", reply_type="text"))
    assert stream.getvalue() == ""  # the fake Graph API's "replied" line already said it
    out.graph_visible = False  # a real Graph API (GRAPH_API_URL)
    out.worker_event(outcome("replied", reply_type="text"))
    assert f"msg {short_id('wamid.one')} replied text" in stream.getvalue()


def test_config_defaults() -> None:
    config = LocalConfig.from_env({})
    assert config.port == DEFAULT_PORT
    assert config.graph_api_url is None
    assert config.log_dir == Path(".local/logs")


def test_config_reads_the_documented_variables() -> None:
    config = LocalConfig.from_env(
        {
            "PORT": "8080",
            "WHATSAPP_APP_SECRET": "a",
            "WHATSAPP_VERIFY_TOKEN": "v",
            "WHATSAPP_ACCESS_TOKEN": "t",
            "GRAPH_API_URL": "https://graph.facebook.com/",
            "GRAPH_API_VERSION": "v26.0",
            "LOG_LEVEL": "debug",
        }
    )
    assert (config.port, config.app_secret, config.verify_token, config.access_token) == (
        8080,
        "a",
        "v",
        "t",
    )
    assert config.graph_api_url == "https://graph.facebook.com"
    assert (config.graph_api_version, config.log_level) == ("v26.0", "DEBUG")


@pytest.mark.parametrize(
    "environ", [{"PORT": "http"}, {"PORT": "70000"}, {"GRAPH_API_URL": "graph.facebook.com"}]
)
def test_config_refuses_malformed_values(environ: dict[str, str]) -> None:
    with pytest.raises(LocalConfigError):
        LocalConfig.from_env(environ)


def test_secrets_stay_out_of_the_config_repr() -> None:
    config = LocalConfig.from_env({"WHATSAPP_APP_SECRET": "hush", "WHATSAPP_ACCESS_TOKEN": "tok"})
    assert "hush" not in repr(config)
    assert "tok" not in repr(config)


def test_a_message_is_tagged_by_its_wamids_tail_which_the_user_can_match() -> None:
    real = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert short_id(real) == "…DEwMTQ0RgA"
    assert real.rstrip("=").endswith(short_id(real).lstrip("…"))
    assert short_id("wamid.one") == "wamid.one"
    assert short_id(None) == "-"


def test_a_burst_gathering_is_no_failed_attempt() -> None:
    out, stream = console()
    out.worker_event(outcome("waiting", reason="waiting 5 s for the rest of its burst"))
    behind = outcome("held_back")
    behind["fields"]["wamid"] = "wamid.two"  # type: ignore[index]
    out.worker_event(behind)
    out.worker_event(
        {
            "event": "batch",
            "records": [
                {"wamid": "wamid.one", "succeeded": False, "receive_count": 1},
                {"wamid": "wamid.two", "succeeded": False, "receive_count": 1},
            ],
        }
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert f"msg {short_id('wamid.one')} waiting" in lines[0]
    assert "failed attempt" not in stream.getvalue()


# --- statuses of replies ------------------------------------------------------------------------


def status_line(message: str, level: str = "INFO", **fields: object) -> dict[str, object]:
    return {
        "event": "log",
        "level": level,
        "message": message,
        "fields": {"wamid": "wamid.in", "reply_wamid": "wamid.out", "result": "status", **fields},
    }


def test_a_status_alone_is_one_masked_line_and_says_it_is_never_answered() -> None:
    out, stream = console()
    body = encode(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "changes": [
                        {
                            "value": {
                                "metadata": {"phone_number_id": "1"},
                                "statuses": [
                                    {
                                        "id": "wamid.out",
                                        "status": "delivered",
                                        "timestamp": "1",
                                        "recipient_id": SENDER,
                                    }
                                ],
                            }
                        }
                    ]
                }
            ],
        }
    )
    out.exchange(exchange(body, response=b'{"queued":0}'))
    [line] = stream.getvalue().splitlines()
    assert "status    delivered for our msg wamid.out to *******9876 (a status: no reply)" in line
    assert SENDER not in line


def test_status_changes_of_replies_are_shown_with_the_latency_a_customer_felt() -> None:
    out, stream = console()
    out.worker_event(
        status_line(
            "reply status changed",
            status="delivered",
            previous_state="sent",
            reply_state="delivered",
            delivery_latency_ms=3000,
        )
    )
    out.worker_event(status_line("reply status already known", status="delivered"))
    out.worker_event(
        status_line(
            "reply failed after it was sent",
            "WARNING",
            status="failed",
            error_code="131047",
            follow_up="sent",
            follow_up_kind="fallback",
            follow_up_wamid="wamid.fallback",
        )
    )
    out.worker_event(status_line("status of no reply we know", status="read", result="retry"))
    lines = stream.getvalue().splitlines()
    assert (
        "reply wamid.out of msg wamid.in: sent -> delivered, 3 s after the customer's" in lines[0]
    )
    assert "late      reply wamid.out of msg wamid.in failed 131047: fallback sent as" in lines[1]
    assert "read for reply wamid.out: not a reply we know (looking again)" in lines[2]
    assert len(lines) == 3  # "already known" is not news


def test_a_status_record_that_backs_off_is_named_by_its_reply() -> None:
    out, stream = console()
    out.worker_event(
        {
            "event": "batch",
            "records": [
                {
                    "wamid": "wamid.out",
                    "status": "sent",
                    "succeeded": False,
                    "receive_count": 1,
                    "visibility_timeout": 2,
                }
            ],
        }
    )
    assert "status sent of reply wamid.out failed attempt 1: retry in 2 s" in stream.getvalue()


def test_the_fake_sends_sent_delivered_read_unless_told_otherwise() -> None:
    assert LocalConfig.from_env({}).fake_statuses == ("sent", "delivered", "read")
    assert LocalConfig.from_env({"FAKE_GRAPH_STATUSES": "none"}).fake_statuses == ()
    assert LocalConfig.from_env({"FAKE_GRAPH_STATUSES": "read, sent"}).fake_statuses == (
        "read",
        "sent",
    )
    with pytest.raises(LocalConfigError, match="FAKE_GRAPH_STATUSES"):
        LocalConfig.from_env({"FAKE_GRAPH_STATUSES": "seen"})


class GoneTerminal(io.StringIO):
    """A terminal whose window was closed: every write fails as a pipe with no reader does."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")


def test_a_console_whose_terminal_is_gone_goes_quiet_instead_of_raising() -> None:
    # Given a console whose terminal went away
    terminal = GoneTerminal()
    lines = Console(terminal, color=False)

    # When the pipeline keeps reporting (as its shutdown does)
    lines.line("stopping ...")
    lines.event("replied", "green", "to …1234")

    # Then nothing is raised, and it stops trying after the first failure
    assert terminal.writes == 1
