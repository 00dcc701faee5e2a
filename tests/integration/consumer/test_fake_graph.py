"""The fake Graph API answers like Meta, records everything, and follows its script."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from functions.domain.ingest.signature import signature_matches
from functions.domain.whatsapp.webhook import parse_delivery
from local_pipeline.fake_graph import (
    FakeGraphApi,
    hang,
    http_error,
    late_failure,
    main,
    meta_error,
    ok,
    reset_connection,
)

pytestmark = pytest.mark.integration

TOKEN = "fake-graph-token"
READ = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"}
SEND = {
    "messaging_product": "whatsapp",
    "to": "16505551234",
    "type": "text",
    "text": {"body": "hi"},
}


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi(expected_token=TOKEN) as server:
        yield server


@pytest.fixture
def http() -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=1))


def post(
    http: urllib3.PoolManager,
    url: str,
    document: Any,
    *,
    token: str | None = TOKEN,
    path: str = "/v25.0/106540352242922/messages",
) -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http.request("POST", url + path, body=json.dumps(document).encode(), headers=headers)


def test_default_answers_are_metas(graph: FakeGraphApi, http: urllib3.PoolManager) -> None:
    read = post(http, graph.url, READ)
    sent = post(http, graph.url, SEND)

    assert read.status == 200
    assert read.json() == {"success": True}
    assert sent.status == 200
    answer = sent.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "16505551234", "wa_id": "16505551234"}]
    assert answer["messages"][0]["id"].startswith("wamid.fake.")
    assert [r.kind for r in graph.requests] == ["read", "send"]
    assert graph.read_receipts()[0].json == READ
    assert graph.sent_messages()[0].phone_number_id == "106540352242922"
    assert graph.sent_messages()[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_missing_or_wrong_token_is_meta_190(graph: FakeGraphApi, http: urllib3.PoolManager) -> None:
    graph.enqueue(meta_error(130429))

    missing = post(http, graph.url, SEND, token=None)
    wrong = post(http, graph.url, SEND, token="nope")

    for response in (missing, wrong):
        assert response.status == 401
        assert response.json()["error"]["code"] == 190
    assert graph.pending_answers() == 1  # refusals do not consume the script
    assert [r.answer for r in graph.requests] == ["unauthorized", "unauthorized"]


def test_script_is_consumed_in_order_by_matching_kind(
    graph: FakeGraphApi, http: urllib3.PoolManager
) -> None:
    graph.enqueue(meta_error(131056, http_status=429, retry_after=7), ok(), kind="send")
    graph.enqueue(meta_error(131000, http_status=500, is_transient=True), kind="read")

    read = post(http, graph.url, READ)
    first = post(http, graph.url, SEND)
    second = post(http, graph.url, SEND)
    third = post(http, graph.url, SEND)

    assert read.status == 500
    assert read.json()["error"]["is_transient"] is True
    assert first.status == 429
    assert first.headers["Retry-After"] == "7"
    error = first.json()["error"]
    assert error["code"] == 131056
    assert error["message"].startswith("(#131056)")
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"]
    assert error["fbtrace_id"]
    assert second.status == 200
    assert third.status == 200
    assert graph.pending_answers() == 0


def test_answers_can_be_scripted_for_one_recipient(
    graph: FakeGraphApi, http: urllib3.PoolManager
) -> None:
    graph.enqueue(meta_error(131056), kind="send", to="2222")

    other = post(http, graph.url, SEND)
    target = post(http, graph.url, SEND | {"to": "2222"})

    assert (other.status, target.status) == (200, 400)
    assert graph.pending_answers() == 0


def test_a_bsuid_is_addressed_by_recipient_and_to_wins_when_both_are_set(
    graph: FakeGraphApi, http: urllib3.PoolManager
) -> None:
    bsuid = "US.13491208655302741918"
    by_bsuid = {key: value for key, value in SEND.items() if key != "to"} | {"recipient": bsuid}
    graph.enqueue(meta_error(131062), kind="send", to=bsuid)

    both = post(http, graph.url, SEND | {"recipient": bsuid})  # Meta sends to `to`
    refused = post(http, graph.url, by_bsuid)
    accepted = post(http, graph.url, by_bsuid)
    nobody = post(http, graph.url, {key: v for key, v in by_bsuid.items() if key != "recipient"})

    assert json.loads(both.data)["contacts"] == [{"input": SEND["to"], "wa_id": SEND["to"]}]
    assert json.loads(refused.data)["error"]["code"] == 131062
    assert json.loads(accepted.data)["contacts"] == [{"input": bsuid, "user_id": bsuid}]
    assert (nobody.status, json.loads(nobody.data)["error"]["code"]) == (400, 100)


def test_raw_and_dripped_answers_can_be_scripted_over_http(
    graph: FakeGraphApi, http: urllib3.PoolManager
) -> None:
    script = {
        "kind": "send",
        "answers": [
            {
                "type": "raw",
                "data": "HTTP/1.1 429 Slow\r\nRetry-After: \u0661\r\nContent-Length: 2\r\n"
                "Connection: close\r\n\r\n{}",
            },
            {"type": "drip", "status": 200, "body": "{}", "seconds_per_byte": 0.01},
        ],
    }
    assert post(http, graph.url, script, path="/__fake/script").status == 200

    raw = post(http, graph.url, SEND)
    dripped = post(http, graph.url, SEND)

    assert (raw.status, raw.headers["Retry-After"].encode("latin-1")) == (429, "\u0661".encode())
    assert (dripped.status, dripped.data) == (200, b"{}")
    assert graph.wait_for_raw_answers(2)
    assert all(progress.complete for progress in graph.raw_answers)


def test_http_error_has_an_html_body(graph: FakeGraphApi, http: urllib3.PoolManager) -> None:
    graph.enqueue(http_error(503))

    response = post(http, graph.url, SEND)

    assert response.status == 503
    assert response.headers["Content-Type"] == "text/html"
    assert response.data.startswith(b"<html>")


def test_hang_outlasts_a_client_timeout(graph: FakeGraphApi) -> None:
    graph.enqueue(hang(2.0))
    impatient = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=0.2))

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        post(impatient, graph.url, SEND)


def test_reset_connection_breaks_the_connection(
    graph: FakeGraphApi, http: urllib3.PoolManager
) -> None:
    graph.enqueue(reset_connection())

    with pytest.raises(urllib3.exceptions.ProtocolError):
        post(http, graph.url, SEND)
    assert graph.sent_messages()[0].answer == "reset_connection"
    assert post(http, graph.url, SEND).status == 200  # the server itself is fine


def test_control_endpoints_script_list_and_reset(
    graph: FakeGraphApi, http: urllib3.PoolManager
) -> None:
    script = {
        "kind": "send",
        "to": SEND["to"],
        "answers": [
            {"type": "meta_error", "code": 130429},
            {"type": "http_error", "status": 502},
            {"type": "ok"},
        ],
    }
    assert http.request("POST", graph.url + "/__fake/script", body=json.dumps(script)).status == 200

    statuses = [post(http, graph.url, SEND).status for _ in range(3)]
    listed = http.request("GET", graph.url + "/__fake/requests").json()
    bad = http.request("POST", graph.url + "/__fake/script", body=b'{"answers":[{"type":"x"}]}')
    reset = http.request("POST", graph.url + "/__fake/reset")

    assert statuses == [400, 502, 200]
    assert [item["kind"] for item in listed] == ["send"] * 3
    assert listed[0]["json"] == SEND
    assert bad.status == 400
    assert reset.status == 200
    assert graph.requests == []


def test_other_paths_are_recorded_and_refused(
    graph: FakeGraphApi, http: urllib3.PoolManager
) -> None:
    response = post(http, graph.url, SEND, path="/v25.0/123/media")

    assert response.status == 400
    assert graph.requests[0].kind == "other"


def test_latency_is_added_and_wait_for_sees_requests(http: urllib3.PoolManager) -> None:
    with FakeGraphApi(latency_seconds=0.1) as graph:
        post(http, graph.url, SEND, token=None)
        assert graph.wait_for(1, kind="send", timeout=1)
        assert not graph.wait_for(1, kind="read", timeout=0.05)


def test_only_loopback_is_bound() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeGraphApi(host="192.0.2.1")


def test_standalone_main_serves_until_told(http: urllib3.PoolManager) -> None:
    seen: list[int] = []

    def drive(graph: FakeGraphApi) -> None:
        seen.append(post(http, graph.url, SEND, token="t").status)

    main(["--port", "0", "--token", "t", "--latency", "0"], serve=drive)

    assert seen == [200]


# --- status webhooks -------------------------------------------------------------------------


class _Webhook:
    """A loopback endpoint that records what it is POSTed."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    endpoint = _Webhook()
    yield endpoint
    endpoint.close()


def test_accepted_sends_are_followed_by_signed_status_webhooks_in_metas_shape(
    graph: FakeGraphApi, http: urllib3.PoolManager, webhook: _Webhook
) -> None:
    graph.send_statuses(webhook.url, "app-secret", delay_seconds=0.0)

    answer = post(http, graph.url, SEND)
    assert graph.wait_for_statuses(3)

    wamid = json.loads(answer.data)["messages"][0]["id"]
    assert [p.status for p in graph.posted_statuses()] == ["sent", "delivered", "read"]
    assert {p.http_status for p in graph.posted_statuses()} == {200}
    for headers, body in webhook.received:
        assert signature_matches(body, headers["x-hub-signature-256"], "app-secret")
        document = json.loads(body)
        (status,) = document["entry"][0]["changes"][0]["value"]["statuses"]
        assert status["id"] == wamid
        assert status["recipient_id"] == SEND["to"]
        assert "pricing" not in status
        assert "conversation" not in status
        (update,) = parse_delivery(document).statuses
        assert update.business.phone_number_id == "106540352242922"


def test_a_scripted_late_failure_is_accepted_then_reported_failed(
    graph: FakeGraphApi, http: urllib3.PoolManager, webhook: _Webhook
) -> None:
    graph.send_statuses(webhook.url, "app-secret", delay_seconds=0.0)
    graph.enqueue(late_failure(131047, repeat=2), kind="send")
    to_username = {**SEND, "recipient": "US.13491208655302741918"}
    del to_username["to"]

    answer = post(http, graph.url, to_username)
    assert graph.wait_for_statuses(2)

    assert answer.status == 200
    assert graph.sent_messages()[0].answer == "ok"
    failed = [
        json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"][0]
        for _, body in webhook.received
    ]
    assert [(s["status"], s["errors"][0]["code"]) for s in failed] == [("failed", 131047)] * 2
    assert failed[0]["recipient_user_id"] == "US.13491208655302741918"
    assert failed[0]["recipient_id"] == ""


def test_status_webhooks_are_controlled_over_http(
    graph: FakeGraphApi, http: urllib3.PoolManager, webhook: _Webhook
) -> None:
    control = graph.url + "/__fake/statuses"
    on = {"url": webhook.url, "appSecret": "s", "sequence": ["delivered"], "delaySeconds": 0}
    assert http.request("POST", control, body=json.dumps(on).encode()).status == 200
    post(http, graph.url, SEND)
    assert graph.wait_for_statuses(1)
    script = {"kind": "send", "answers": [{"type": "late_failure", "code": 131026}]}
    http.request("POST", graph.url + "/__fake/script", body=json.dumps(script).encode())
    post(http, graph.url, SEND)
    assert graph.wait_for_statuses(2)

    posted = json.loads(http.request("GET", control).data)
    assert [(p["status"], p["error_code"]) for p in posted] == [
        ("delivered", None),
        ("failed", 131026),
    ]
    off = http.request("POST", control, body=json.dumps({"url": None}).encode())
    assert json.loads(off.data) == {"statuses": False}
    assert graph.status_webhooks is None


def test_a_client_that_dies_mid_request_leaves_no_traceback(
    graph: FakeGraphApi, capfd: pytest.CaptureFixture[str]
) -> None:
    import socket
    import struct
    import time

    # Half a request line, then a TCP reset instead of the rest (a client SIGKILLed mid-request).
    client = socket.create_connection((graph.host, graph.port))
    client.sendall(b"POST /v25.0/1065/mess")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    # The server is there for the next caller...
    answer = urllib3.request(
        "POST",
        f"{graph.url}/v25.0/1065/messages",
        json=READ,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status == 200
    # ...and said nothing about the first (given time to: its thread runs on its own).
    said = ""
    for _ in range(50):
        said += capfd.readouterr().err
        if "Traceback" in said:
            break
        time.sleep(0.01)
    assert "Traceback" not in said
