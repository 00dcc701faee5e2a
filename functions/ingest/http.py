"""API Gateway REST (payload 1.0) events in, proxy responses out, and the one table that maps
domain exceptions to HTTP answers."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.common.names import (
    METRIC_INVALID_PAYLOAD,
    METRIC_INVALID_SIGNATURE,
    METRIC_QUEUE_SEND_FAILED,
)
from functions.common.settings import ConfigurationError
from functions.domain.ingest.accept import SignatureRejected, VerificationRejected
from functions.domain.ingest.ports import PublishFailed
from functions.domain.whatsapp.credentials import CredentialsUnavailable
from functions.domain.whatsapp.webhook import InvalidPayload


class BadRequest(Exception):
    """The HTTP request itself is unusable (e.g. a body that is not valid base64)."""


class MethodNotAllowed(Exception):
    """Only GET (the handshake) and POST (deliveries) exist on /webhook."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    headers: Mapping[str, str]  # lower-cased names
    query: Mapping[str, str]
    body: bytes  # exactly the bytes the client sent: the signature is over these

    @classmethod
    def from_event(cls, event: object) -> HttpRequest:
        if not isinstance(event, Mapping):
            raise BadRequest("the event is not an API Gateway proxy event")
        headers = _single_values(event.get("headers"), event.get("multiValueHeaders"))
        query = _single_values(
            event.get("queryStringParameters"), event.get("multiValueQueryStringParameters")
        )
        return cls(
            method=str(event.get("httpMethod") or "").upper(),
            headers={name.lower(): value for name, value in headers.items()},
            query=query,
            body=_raw_body(event.get("body"), bool(event.get("isBase64Encoded"))),
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _single_values(single: object, multi: object) -> dict[str, str]:
    values: dict[str, str] = {}
    if isinstance(multi, Mapping):
        for name, items in multi.items():
            if isinstance(items, list) and items and isinstance(items[-1], str):
                values[str(name)] = items[-1]
    if isinstance(single, Mapping):
        values.update({str(k): v for k, v in single.items() if isinstance(v, str)})
    return values


def _raw_body(body: object, is_base64: bool) -> bytes:
    if body is None:
        return b""
    if not isinstance(body, str):
        raise BadRequest("the request body is not text")
    if is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the request body is marked base64 but is not valid base64") from None
    # API Gateway decoded the client's UTF-8 bytes into this string; encoding gives them back.
    return body.encode("utf-8", "surrogatepass")


def text_response(status: int, text: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "text/plain; charset=utf-8"},
        "body": text,
        "isBase64Encoded": False,
    }


def json_response(status: int, document: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(document, separators=(",", ":")),
        "isBase64Encoded": False,
    }


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """How the ingest answers one kind of refusal, and how it reports it.

    4xx answers say what was wrong with the request (the exception's own message); 5xx answers
    say only what happened (`public_message`), since details (ids, ARNs) are for the logs.
    """

    status: int
    code: str
    public_message: str | None
    log_level: str  # logger method: "info", "warning" or "error"
    log_message: str
    metric: str | None = None  # counted once per refusal
    by_error_code: bool = False  # the metric carries the exception's `error_code` dimension


# The one exception -> answer table of the ingest, read top to bottom.
ERROR_ANSWERS: Mapping[type[Exception], ErrorAnswer] = {
    VerificationRejected: ErrorAnswer(403, "verification_failed", None, "info", "request refused"),
    SignatureRejected: ErrorAnswer(
        401, "invalid_signature", None, "warning", "webhook rejected", METRIC_INVALID_SIGNATURE
    ),
    InvalidPayload: ErrorAnswer(
        400, "invalid_payload", None, "warning", "webhook rejected", METRIC_INVALID_PAYLOAD
    ),
    BadRequest: ErrorAnswer(400, "bad_request", None, "info", "request refused"),
    MethodNotAllowed: ErrorAnswer(405, "method_not_allowed", None, "info", "request refused"),
    PublishFailed: ErrorAnswer(
        503,
        "queue_unavailable",
        "the delivery was not queued; retry later",
        "error",
        "delivery not queued; Meta will redeliver",
        METRIC_QUEUE_SEND_FAILED,
        by_error_code=True,
    ),
    CredentialsUnavailable: ErrorAnswer(
        503,
        "credentials_unavailable",
        "credentials could not be read",
        "error",
        "cannot serve webhooks",
    ),
    ConfigurationError: ErrorAnswer(
        500,
        "configuration_error",
        "the function is misconfigured",
        "error",
        "cannot serve webhooks",
    ),
}

ANSWERED_ERRORS = tuple(ERROR_ANSWERS)


def answer_for(error: Exception) -> ErrorAnswer:
    """The table's entry for `error` (its class or nearest listed base class)."""
    for error_type in type(error).__mro__:
        if error_type in ERROR_ANSWERS:
            return ERROR_ANSWERS[error_type]
    raise error


def error_response(error: Exception, answer: ErrorAnswer) -> dict[str, Any]:
    response = json_response(
        answer.status, {"error": answer.code, "message": answer.public_message or str(error)}
    )
    if answer.status == 405:
        response["headers"]["Allow"] = "GET, POST"
    return response
