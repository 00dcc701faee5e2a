"""REST proxy events in, HTTP answers out; the secret's format."""

import base64
import json

import pytest

from functions.domain.ingest.ports import PublishFailed
from functions.domain.whatsapp.credentials import SecretFormatError, WhatsAppCredentials
from functions.ingest.http import (
    ERROR_ANSWERS,
    BadRequest,
    HttpRequest,
    answer_for,
    error_response,
)
from tests.events import builders as b

pytestmark = pytest.mark.unit


def test_header_names_in_any_case_and_multi_value_headers() -> None:
    event = b.api_event(headers={"X-HUB-Signature-256": "sha256=ab"})
    assert HttpRequest.from_event(event).header("x-hub-signature-256") == "sha256=ab"

    only_multi = b.api_event()
    only_multi["multiValueHeaders"] = {"x-hub-signature-256": ["sha256=cd"]}
    assert HttpRequest.from_event(only_multi).header("X-Hub-Signature-256") == "sha256=cd"


def test_raw_bytes_come_back_from_text_and_base64_bodies() -> None:
    raw = '{"t":"café 👍"}'.encode()
    assert HttpRequest.from_event(b.api_event(body=raw)).body == raw
    assert HttpRequest.from_event(b.api_event(body=raw, base64_encoded=True)).body == raw
    not_utf8 = b"\xff\x00{}"
    event = b.api_event()
    event.update(body=base64.b64encode(not_utf8).decode(), isBase64Encoded=True)
    assert HttpRequest.from_event(event).body == not_utf8


def test_null_pieces_of_the_event_are_tolerated() -> None:
    request = HttpRequest.from_event({"httpMethod": "get", "headers": None, "body": None})
    assert request.method == "GET"
    assert request.body == b""
    assert request.query == {}
    assert HttpRequest.from_event({}).method == ""


@pytest.mark.parametrize("event", [None, [], "GET /webhook"])
def test_something_that_is_not_a_proxy_event_is_a_bad_request(event: object) -> None:
    with pytest.raises(BadRequest):
        HttpRequest.from_event(event)


def test_bad_base64_is_a_bad_request() -> None:
    event = b.api_event()
    event.update(body="%%% not base64", isBase64Encoded=True)
    with pytest.raises(BadRequest):
        HttpRequest.from_event(event)


def test_unknown_exceptions_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        answer_for(KeyError("bug"))


def test_every_answer_is_json_and_subclasses_use_their_base_entry() -> None:
    from functions.domain.ingest.accept import BodyNotJson

    for error_type, expected in ERROR_ANSWERS.items():
        error = (
            error_type("why")
            if error_type is not PublishFailed
            else PublishFailed("why", accepted=0, error_code="x")
        )
        response = error_response(error, answer_for(error))
        assert response["statusCode"] == expected.status
        assert json.loads(response["body"])["error"] == expected.code
    assert answer_for(BodyNotJson("no")).code == "invalid_payload"


def test_server_errors_do_not_leak_details() -> None:
    from functions.domain.whatsapp.credentials import CredentialsUnavailable

    error = CredentialsUnavailable("cannot read arn:aws:secretsmanager:eu-west-1:123456789012:x")
    answer = error_response(error, answer_for(error))
    assert answer["statusCode"] == 503
    assert "123456789012" not in answer["body"]
    assert json.loads(answer["body"])["error"] == "credentials_unavailable"


def test_credentials_parse_and_never_show_in_repr() -> None:
    creds = WhatsAppCredentials.from_secret_string(
        '{"appSecret": "s3cr3t", "verifyToken": "vt", "accessToken": "EAAG", "extra": 1}'
    )
    assert creds.app_secret == "s3cr3t"
    assert "s3cr3t" not in repr(creds)
    assert "EAAG" not in repr(creds)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "not json",
        "[]",
        '{"appSecret": "a"}',
        '{"appSecret": 1, "verifyToken": "v", "accessToken": "t"}',
    ],
)
def test_malformed_secrets_name_the_problem_without_values(secret: str) -> None:
    with pytest.raises(SecretFormatError) as caught:
        WhatsAppCredentials.from_secret_string(secret)
    assert 'a"' not in str(caught.value)
