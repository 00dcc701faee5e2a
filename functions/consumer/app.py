"""Entry point of the consumer Lambda: FIFO SQS batch -> read receipt + threaded reply."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.observability import lambda_handler
from functions.common.settings import ConfigurationError
from functions.consumer import wiring
from functions.consumer.events import inbox_records
from functions.consumer.telemetry import report_batch, report_unusable_configuration
from functions.domain.consumer.consume import consume_batch
from functions.domain.consumer.reply_rules import ReplyRulesError


@lambda_handler()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        consumer = wiring.consumer(context)
    except (ConfigurationError, ReplyRulesError, OSError) as error:
        report_unusable_configuration(error)
        raise  # a failed invocation: SQS redelivers the whole batch, Lambda counts an Error
    result = consume_batch(inbox_records(event), consumer)
    report_batch(result)
    return {"batchItemFailures": result.batch_item_failures()}
