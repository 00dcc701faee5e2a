"""Entry point of the ingest Lambda: API Gateway REST `/webhook` -> verify -> FIFO queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.observability import lambda_handler, logger
from functions.domain.ingest.accept import accept_delivery, verify_subscription
from functions.ingest import wiring
from functions.ingest.http import (
    ANSWERED_ERRORS,
    HttpRequest,
    MethodNotAllowed,
    answer_for,
    error_response,
    json_response,
    text_response,
)
from functions.ingest.telemetry import report_delivery, report_rejection


@lambda_handler(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = HttpRequest.from_event(event)
        if request.method == "GET":
            challenge = verify_subscription(
                request.query.get("hub.mode"),
                request.query.get("hub.verify_token"),
                request.query.get("hub.challenge"),
                wiring.credentials(),
            )
            return text_response(200, challenge)
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method or 'no method'} is not allowed on /webhook")
        summary = accept_delivery(
            request.body,
            request.header("X-Hub-Signature-256"),
            credentials=wiring.credentials(),
            publisher=wiring.publisher(),
            now=lambda: datetime.now(UTC),
            statuses=wiring.status_publisher(),
            remaining_seconds=wiring.remaining_seconds(context),
        )
        report_delivery(summary)
        return json_response(200, {"queued": len(summary.queued)})
    except ANSWERED_ERRORS as error:
        answer = answer_for(error)
        report_rejection(error, answer)
        return error_response(error, answer)
    except Exception:  # noqa: BLE001 - the boundary: a bug still answers JSON, never a trace
        logger.exception("unexpected error; nothing was acknowledged")
        return json_response(
            500, {"error": "internal_error", "message": "the delivery was not queued; retry later"}
        )
