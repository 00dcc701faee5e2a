"""Backoff through SQS: raise failed records' visibility timeouts in one batch call.

A record's queue is the one its `eventSourceARN` (`arn:aws:sqs:<region>:<account>:<name>`)
names: one of the URLs the adapter was given (`QUEUE_URL`, `STATUS_QUEUE_URL`) by its name, else
resolved once with GetQueueUrl; a record without an ARN belongs to the first URL given. A change
that SQS refuses is reported back (the record then reappears after the queue's default
visibility timeout: later, never lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from functions.domain.consumer.ports import VisibilityChange

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

MAX_BATCH: Final = 10
# SQS caps a message's *total* visibility at 12 hours from the moment it was received, and the
# poller received it a little before this invocation started: keep a margin below the cap.
MAX_TOTAL_VISIBILITY_SECONDS: Final = 43_200
RECEIVED_AGO_MARGIN_SECONDS: Final = 300


class SqsVisibility:
    """`VisibilityControl` over ChangeMessageVisibilityBatch."""

    def __init__(self, sqs_client: SQSClient, *queue_urls: str | None) -> None:
        self._sqs = sqs_client
        known = [url for url in queue_urls if url]
        self._default = known[0] if known else None
        self._by_name = {url.rstrip("/").rsplit("/", 1)[-1]: url for url in known}

    def _url_for(self, event_source_arn: str) -> str:
        name = event_source_arn.rsplit(":", 1)[-1] if event_source_arn else ""
        if name in self._by_name:
            return self._by_name[name]
        if not event_source_arn and self._default is not None:
            return self._default
        return _queue_url(self._sqs, event_source_arn)

    def change(self, changes: Sequence[VisibilityChange]) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        sqs = self._sqs
        failed: list[str] = []
        by_queue: dict[str, list[VisibilityChange]] = {}
        for change in changes:
            try:
                url = self._url_for(change.event_source_arn)
            except (ClientError, BotoCoreError, ValueError):
                failed.append(change.message_id)
                continue
            by_queue.setdefault(url, []).append(change)
        for url, queue_changes in by_queue.items():
            for start in range(0, len(queue_changes), MAX_BATCH):
                chunk = queue_changes[start : start + MAX_BATCH]
                entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                    {
                        "Id": str(index),
                        "ReceiptHandle": change.receipt_handle,
                        "VisibilityTimeout": min(
                            change.timeout_seconds,
                            MAX_TOTAL_VISIBILITY_SECONDS - RECEIVED_AGO_MARGIN_SECONDS,
                        ),
                    }
                    for index, change in enumerate(chunk)
                ]
                try:
                    answer = sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
                except (ClientError, BotoCoreError):
                    failed.extend(change.message_id for change in chunk)
                    continue
                failed.extend(
                    chunk[int(entry["Id"])].message_id for entry in answer.get("Failed", [])
                )
        return failed


def _queue_url(sqs: Any, event_source_arn: str) -> str:
    parts = event_source_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError("not an SQS queue ARN")
    return _resolve(sqs, parts[5], parts[4])


@lru_cache(maxsize=16)
def _resolve(sqs: Any, name: str, account: str) -> str:
    url: str = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return url
