"""The local API Gateway: real HTTP in, the REST proxy event (payload 1.0) to the handler, the
handler's answer back out exactly."""

from __future__ import annotations

import base64
import http.client
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from local_pipeline.gateway import (
    Gateway,
    InvalidProxyResponse,
    PortInUse,
    build_proxy_event,
    proxy_response_to_http,
)

pytestmark = pytest.mark.integration


class RecordingHandler:
    """Answers with `response` (or raises `error`) and keeps the events it was given."""

    def __init__(self, response: Any = None, error: Exception | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.response = response or {"statusCode": 200, "body": "ok"}
        self.error = error

    def __call__(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if self.error is not None:
            raise self.error
        return self.response


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def gateway(handler: RecordingHandler) -> Iterator[Gateway]:
    with Gateway(handler, port=0) as running:
        yield running


def request(
    gateway: Gateway,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    return connection.getresponse()


def test_event_carries_single_and_multi_value_headers_and_query() -> None:
    # Given a request with a repeated header and a repeated query parameter
    event = build_proxy_event(
        method="GET",
        raw_path="/webhook?hub.mode=subscribe&a=1&a=2&hub.challenge=x%20y",
        headers=[("X-Thing", "one"), ("X-Thing", "two"), ("Host", "127.0.0.1:3000")],
        body=b"",
        request_id="req-1",
    )
    # Then single-value maps hold the last value and multi-value maps all of them
    assert event["httpMethod"] == "GET"
    assert event["resource"] == "/webhook"
    assert event["path"] == "/webhook"
    assert event["headers"]["X-Thing"] == "two"
    assert event["multiValueHeaders"]["X-Thing"] == ["one", "two"]
    assert event["queryStringParameters"] == {
        "hub.mode": "subscribe",
        "a": "2",
        "hub.challenge": "x y",
    }
    assert event["multiValueQueryStringParameters"]["a"] == ["1", "2"]
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["requestId"] == "req-1"
    assert event["requestContext"]["stage"] == "local"
    assert event["requestContext"]["resourcePath"] == "/webhook"


def test_event_without_query_or_headers_has_nulls_like_api_gateway() -> None:
    event = build_proxy_event(method="POST", raw_path="/webhook", headers=[], body=b"{}")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["headers"] is None
    assert event["body"] == "{}"


def test_non_utf8_body_travels_base64_encoded() -> None:
    raw = b"\xff\xfe not utf-8"
    event = build_proxy_event(method="POST", raw_path="/webhook", headers=[], body=raw)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_each_request_gets_a_fresh_request_id() -> None:
    first = build_proxy_event(method="GET", raw_path="/webhook", headers=[], body=b"")
    second = build_proxy_event(method="GET", raw_path="/webhook", headers=[], body=b"")
    assert first["requestContext"]["requestId"] != second["requestContext"]["requestId"]


def test_proxy_response_keeps_status_headers_and_body() -> None:
    answer = proxy_response_to_http(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-One": "single"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        }
    )
    assert answer.status == 201
    assert ("Set-Cookie", "a=1") in answer.headers
    assert ("Set-Cookie", "b=2") in answer.headers
    assert ("X-One", "single") in answer.headers
    assert answer.body == b"\x00\x01"


@pytest.mark.parametrize(
    "response",
    [None, "text", {"body": "no status"}, {"statusCode": 200, "body": 5}, {"statusCode": 99}],
)
def test_invalid_proxy_responses_are_refused(response: Any) -> None:
    with pytest.raises(InvalidProxyResponse):
        proxy_response_to_http(response)


def test_http_round_trip_is_exact(gateway: Gateway, handler: RecordingHandler) -> None:
    # Given a handler answering a specific status, headers and body
    handler.response = {
        "statusCode": 403,
        "headers": {"Content-Type": "application/json", "X-Custom": "yes"},
        "body": '{"error":"verification_failed"}',
        "isBase64Encoded": False,
    }
    # When a real HTTP request arrives with a body and a query string
    body = b'{"a": "\\u00e9"}'
    response = request(
        gateway,
        "POST",
        "/webhook?x=1",
        body=body,
        headers={"X-Hub-Signature-256": "sha256=abc", "Content-Type": "application/json"},
    )
    # Then the handler saw exactly those bytes and headers, and the client got its exact answer
    event = handler.events[-1]
    assert event["body"].encode("utf-8") == body
    assert event["headers"]["X-Hub-Signature-256"] == "sha256=abc"
    assert event["queryStringParameters"] == {"x": "1"}
    assert response.status == 403
    assert response.getheader("X-Custom") == "yes"
    assert response.getheader("Content-Type") == "application/json"
    assert response.read() == b'{"error":"verification_failed"}'


def test_unknown_path_is_missing_authentication_token(
    gateway: Gateway, handler: RecordingHandler
) -> None:
    response = request(gateway, "GET", "/other")
    assert response.status == 403
    assert b"Missing Authentication Token" in response.read()
    assert handler.events == []


def test_a_handler_that_raises_becomes_502() -> None:
    failing = RecordingHandler(error=RuntimeError("boom"))
    with Gateway(failing, port=0) as running:
        response = request(running, "POST", "/webhook", body=b"{}")
        assert response.status == 502
        assert response.read() == b'{"message": "Internal server error"}'


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = Gateway(RecordingHandler(), port=port)
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            gateway.start()


def test_stop_ends_idle_keep_alive_connections(handler: RecordingHandler) -> None:
    # Given a client holding a keep-alive connection open
    running = Gateway(handler, port=0)
    running.start()
    port = running.port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/webhook")
    connection.getresponse().read()
    # When the gateway stops, then it returns (request threads joined) and the port is closed
    running.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    connection.close()
