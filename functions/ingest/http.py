"""API Gateway REST (payload 1.0) events in, proxy responses out, and the one table that maps
domain exceptions to HTTP answers."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.common.settings import ConfigurationError
from functions.domain.ingest import SignatureRejected, VerificationRejected
from functions.domain.ports import CredentialsUnavailable, PublishFailed
from functions.domain.webhook import InvalidPayload

SIGNATURE_HEADER = "x-hub-signature-256"


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


# Exception -> (status, error code, public message). 4xx answers say what was wrong with the
# request; 5xx answers say only what happened, since details (ids, ARNs) are for the logs.
_ERROR_ANSWERS: tuple[tuple[type[Exception], int, str, str | None], ...] = (
    (VerificationRejected, 403, "verification_failed", None),
    (SignatureRejected, 401, "invalid_signature", None),
    (InvalidPayload, 400, "invalid_payload", None),
    (BadRequest, 400, "bad_request", None),
    (MethodNotAllowed, 405, "method_not_allowed", None),
    (PublishFailed, 503, "queue_unavailable", "the delivery was not queued; retry later"),
    (CredentialsUnavailable, 503, "credentials_unavailable", "credentials could not be read"),
    (ConfigurationError, 500, "configuration_error", "the function is misconfigured"),
)

ANSWERED_ERRORS = tuple(entry[0] for entry in _ERROR_ANSWERS)


def error_response(error: Exception) -> dict[str, Any]:
    """The HTTP answer for a domain exception; anything not in the table is re-raised."""
    for error_type, status, code, public_message in _ERROR_ANSWERS:
        if isinstance(error, error_type):
            message = public_message or str(error)
            response = json_response(status, {"error": code, "message": message})
            if isinstance(error, MethodNotAllowed):
                response["headers"]["Allow"] = "GET, POST"
            return response
    raise error
