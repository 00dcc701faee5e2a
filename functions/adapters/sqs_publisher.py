"""Puts queued records on their queues with `SendMessageBatch`: message records on the inbound
FIFO queue, status records on the (standard) status queue.

Records are sent in batches of ten. Entries SQS reports as failed are sent again (up to
`MAX_ATTEMPTS` in all) before the next batch of the same conversation goes out, so a retry never
overtakes a later message of its conversation. Conversations are spread over a few lanes that run
in parallel: a 1,000-message delivery is not 100 round trips back to back while Meta waits.
Status records have no order to keep: they are dealt round the lanes ten by ten.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from functions.domain.ingest.ports import PublishFailed
from functions.domain.whatsapp.queued_record import QueuedRecord, QueuedStatus

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH_LIMIT = 10
# SQS refuses a batch whose bodies add up to more than this (the 1 MiB limit of late 2025 is not
# in every emulator or region yet, so stay under the classic one).
SQS_BATCH_BYTES = 256 * 1024
MAX_ATTEMPTS = 3
MAX_LANES = 8


@dataclass(frozen=True, slots=True)
class _Entry:
    entry_id: str
    body: str
    lane_key: str  # entries with one key keep their order (one conversation)
    group_id: str | None = None  # FIFO only
    deduplication_id: str | None = None  # FIFO only

    def request(self) -> SendMessageBatchRequestEntryTypeDef:
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": self.entry_id, "MessageBody": self.body}
        if self.group_id is not None:
            entry["MessageGroupId"] = self.group_id
        if self.deduplication_id is not None:
            entry["MessageDeduplicationId"] = self.deduplication_id
        return entry


class SqsFifoPublisher:
    """`MessagePublisher` for one FIFO queue."""

    def __init__(self, sqs_client: SQSClient, queue_url: str) -> None:
        self._sender = _BatchSender(sqs_client, queue_url, what="messages")

    def publish(self, records: Sequence[QueuedRecord]) -> None:
        self._sender.send(
            [
                _Entry(
                    entry_id=str(index),
                    body=record.to_json(),
                    lane_key=record.group_id,
                    group_id=record.group_id,
                    deduplication_id=record.deduplication_id,
                )
                for index, record in enumerate(records)
            ]
        )


class SqsStatusPublisher:
    """`StatusPublisher` for one standard queue: no groups, no order, no deduplication ids (the
    consumer's effects are idempotent; SQS's at-least-once delivery costs a no-op write)."""

    def __init__(self, sqs_client: SQSClient, queue_url: str) -> None:
        self._sender = _BatchSender(sqs_client, queue_url, what="statuses")

    def publish(self, statuses: Sequence[QueuedStatus]) -> None:
        self._sender.send(
            [
                # Tens share a lane key: lanes get whole batches.
                _Entry(str(index), status.to_json(), lane_key=str(index // SQS_BATCH_LIMIT))
                for index, status in enumerate(statuses)
            ]
        )


class _BatchSender:
    def __init__(self, sqs_client: SQSClient, queue_url: str, *, what: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._what = what

    def send(self, entries: Sequence[_Entry]) -> None:
        lanes = _lanes(entries)
        if len(lanes) == 1:
            results = [self._send_lane(lanes[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
                results = list(pool.map(self._send_lane, lanes))
        accepted = sum(ok for ok, _ in results)
        failures = [code for _, code in results if code is not None]
        if failures:
            raise PublishFailed(
                f"the queue accepted {accepted} of {len(entries)} {self._what}",
                accepted=accepted,
                error_code=failures[0],
            )

    def _send_lane(self, entries: list[_Entry]) -> tuple[int, str | None]:
        """Send one lane's batches in order; stop at the first batch that will not go."""
        accepted = 0
        for batch in _batches(entries):
            not_accepted, error_code = self._send_batch(batch)
            accepted += len(batch) - not_accepted
            if error_code is not None:
                return accepted, error_code
        return accepted, None

    def _send_batch(self, batch: list[_Entry]) -> tuple[int, str | None]:
        """(entries SQS would not take, their error code); (0, None) when it took them all."""
        from botocore.exceptions import BotoCoreError, ClientError

        pending = batch
        error_code = "unknown"
        for _attempt in range(MAX_ATTEMPTS):
            try:
                response = self._sqs.send_message_batch(
                    QueueUrl=self._queue_url, Entries=[entry.request() for entry in pending]
                )
            except ClientError as error:
                error_code = str(error.response.get("Error", {}).get("Code", "ClientError"))
                continue
            except BotoCoreError as error:
                error_code = type(error).__name__
                continue
            failed = {item["Id"]: item for item in response.get("Failed", [])}
            if not failed:
                return 0, None
            pending = [entry for entry in pending if entry.entry_id in failed]
            error_code = str(next(iter(failed.values())).get("Code", "unknown"))
            if any(item.get("SenderFault") for item in failed.values()):
                # SQS says the entry itself is wrong: sending it again cannot help.
                return len(pending), error_code
        return len(pending), error_code


def _lanes(entries: Sequence[_Entry]) -> list[list[_Entry]]:
    """Split entries into at most MAX_LANES lists; all of a lane key stays in one, in order."""
    by_group: dict[str, list[_Entry]] = {}
    for entry in entries:
        by_group.setdefault(entry.lane_key, []).append(entry)
    lane_count = min(MAX_LANES, max(1, len(entries) // SQS_BATCH_LIMIT), len(by_group))
    lanes: list[list[_Entry]] = [[] for _ in range(lane_count)]
    for position, group in enumerate(by_group.values()):
        lanes[position % lane_count].extend(group)
    return lanes


def _batches(entries: list[_Entry]) -> list[list[_Entry]]:
    batches: list[list[_Entry]] = []
    current: list[_Entry] = []
    size = 0
    for entry in entries:
        entry_size = len(entry.body.encode("utf-8"))
        if current and (len(current) == SQS_BATCH_LIMIT or size + entry_size > SQS_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        batches.append(current)
    return batches
