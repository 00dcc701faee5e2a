"""The consumer's own dead letters: a record whose attempts ran out (or that no code can read) is
put on the FIFO dead-letter queue with why it got there, as message attributes that
`make inspect-dlq` shows without a log query.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from functions.domain.consumer.ports import DeadLetter, DeadLetterFailed

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

# Message attribute names (tools/dlq.py reads them).
ATTRIBUTE_REASON: Final = "DeadLetterReason"
ATTRIBUTE_ERROR_CODE: Final = "ErrorCode"
ATTRIBUTE_ERROR_CLASS: Final = "ErrorClass"
ATTRIBUTE_ATTEMPTS: Final = "Attempts"
ATTRIBUTE_LAST_ATTEMPT_AT: Final = "LastAttemptAt"
ATTRIBUTE_WAMID: Final = "Wamid"


class SqsDeadLetters:
    """`DeadLetters` for one FIFO dead-letter queue."""

    def __init__(self, sqs_client: SQSClient, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def send(self, body: str, group_id: str, letter: DeadLetter) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        attributes: dict[str, MessageAttributeValueTypeDef] = {
            ATTRIBUTE_REASON: _text(letter.reason),
            ATTRIBUTE_ERROR_CODE: _text(letter.error_code),
            ATTRIBUTE_ERROR_CLASS: _text(letter.error_class),
            ATTRIBUTE_ATTEMPTS: {"DataType": "Number", "StringValue": str(letter.attempts)},
            ATTRIBUTE_LAST_ATTEMPT_AT: _text(
                datetime.fromtimestamp(letter.last_attempt_at, tz=UTC).isoformat(timespec="seconds")
            ),
        }
        if letter.wamid:
            attributes[ATTRIBUTE_WAMID] = _text(letter.wamid)
        # The same dead letter sent twice (a run that died before the record was deleted) is
        # dropped by the DLQ's own deduplication.
        identity = letter.wamid or body
        deduplication_id = hashlib.sha256(f"dead:{identity}".encode()).hexdigest()
        try:
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                MessageGroupId=group_id,
                MessageDeduplicationId=deduplication_id,
                MessageAttributes=attributes,
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "ClientError")
            raise DeadLetterFailed(f"dead-letter queue: {code}") from None
        except BotoCoreError as error:
            raise DeadLetterFailed(f"dead-letter queue: {type(error).__name__}") from None


def _text(value: str) -> MessageAttributeValueTypeDef:
    return {"DataType": "String", "StringValue": value or "-"}
