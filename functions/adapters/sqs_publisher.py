"""Puts queued records on their queues with `SendMessageBatch`: message records on the inbound
FIFO queue, keeping each conversation's records in order even when SQS accepts only some entries
of a batch; status records on the (standard) status queue, in no particular order.

SQS reports every entry of a batch on its own: it may refuse #0 of a conversation and accept #1
and #2, and #0 sent again would then come after them. So a record is sent only once every
earlier record of its conversation was accepted: each round sends the oldest unsent record of
every conversation (in batches of ten, in parallel), and a refused record is sent again in the
next round before anything behind it. A conversation whose record is refused `MAX_ATTEMPTS`
times (or refused as malformed) stops there; its later records are not sent, so when Meta
redelivers the webhook they all go out in order (SQS drops the ones it already took as
duplicates). Deliveries of one message per conversation (nearly all of them) take the same calls
as plain batching; n messages of one conversation in one delivery take n rounds.

Status records have no order to keep: each is a conversation of its own, so all of them go out
in the first round (a refused one is sent again in the next).

Time: a call starts only while `remaining_seconds()` leaves room for the longest call the SQS
client can make (`longest_call_seconds`: its timeouts times its attempts), so a hanging queue
ends in `PublishFailed` while the function can still answer.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
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
MAX_ATTEMPTS = 3  # sends of one record, ours (the ingest's SQS client does not retry)
MAX_PARALLEL_CALLS = 8
OUT_OF_TIME = "out_of_time"  # the ErrorCode when no call could start in the time left


@dataclass(frozen=True, slots=True)
class _Entry:
    entry_id: str
    body: str
    conversation: str  # entries of one conversation go out in order, one round each
    group_id: str | None = None  # FIFO only
    deduplication_id: str | None = None  # FIFO only

    def request(self) -> SendMessageBatchRequestEntryTypeDef:
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": self.entry_id, "MessageBody": self.body}
        if self.group_id is not None:
            entry["MessageGroupId"] = self.group_id
        if self.deduplication_id is not None:
            entry["MessageDeduplicationId"] = self.deduplication_id
        return entry


@dataclass(frozen=True, slots=True)
class _Refusal:
    code: str
    final: bool = False  # SQS says the entry itself is wrong: sending it again cannot help


class SqsFifoPublisher:
    """`MessagePublisher` for one FIFO queue."""

    def __init__(
        self, sqs_client: SQSClient, queue_url: str, *, longest_call_seconds: float = 0.0
    ) -> None:
        self._sender = _Sender(sqs_client, queue_url, longest_call_seconds, what="messages")

    def publish(
        self,
        records: Sequence[QueuedRecord],
        *,
        remaining_seconds: Callable[[], float] = lambda: math.inf,
    ) -> None:
        entries = [
            _Entry(
                entry_id=str(index),
                body=record.to_json(),
                conversation=record.group_id,
                group_id=record.group_id,
                deduplication_id=record.deduplication_id,
            )
            for index, record in enumerate(records)
        ]
        self._sender.send(entries, remaining_seconds)


class SqsStatusPublisher:
    """`StatusPublisher` for one standard queue: no groups, no order, no deduplication ids (the
    consumer's effects are idempotent; SQS's at-least-once delivery costs a no-op write)."""

    def __init__(
        self, sqs_client: SQSClient, queue_url: str, *, longest_call_seconds: float = 0.0
    ) -> None:
        self._sender = _Sender(sqs_client, queue_url, longest_call_seconds, what="statuses")

    def publish(
        self,
        statuses: Sequence[QueuedStatus],
        *,
        remaining_seconds: Callable[[], float] = lambda: math.inf,
    ) -> None:
        entries = [
            _Entry(entry_id=str(index), body=status.to_json(), conversation=str(index))
            for index, status in enumerate(statuses)
        ]
        self._sender.send(entries, remaining_seconds)


class _Sender:
    def __init__(
        self, sqs_client: SQSClient, queue_url: str, longest_call_seconds: float, *, what: str
    ) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._longest_call_seconds = longest_call_seconds
        self._what = what

    def send(self, entries: Sequence[_Entry], remaining_seconds: Callable[[], float]) -> None:
        waiting = _conversations(entries)
        attempts: dict[str, int] = {}
        last_code: dict[str, str] = {}  # entry id -> why SQS last refused it
        stopped: dict[str, str] = {}  # group id -> the error code that stopped it
        accepted = 0
        while heads := [queue[0] for group, queue in waiting.items() if group not in stopped]:
            for entry, refusal in self._send_round(heads, remaining_seconds):
                group = entry.conversation
                if refusal is None:
                    waiting[group].popleft()
                    accepted += 1
                    if not waiting[group]:
                        del waiting[group]
                    continue
                if refusal.code == OUT_OF_TIME:
                    # Report what went wrong before time ran out, if anything did.
                    stopped[group] = last_code.get(entry.entry_id, OUT_OF_TIME)
                    continue
                last_code[entry.entry_id] = refusal.code
                attempts[entry.entry_id] = attempts.get(entry.entry_id, 0) + 1
                if refusal.final or attempts[entry.entry_id] >= MAX_ATTEMPTS:
                    stopped[group] = refusal.code
        if stopped:
            raise PublishFailed(
                f"the queue accepted {accepted} of {len(entries)} {self._what}",
                accepted=accepted,
                error_code=next(iter(stopped.values())),
            )

    def _send_round(
        self, heads: list[_Entry], remaining_seconds: Callable[[], float]
    ) -> list[tuple[_Entry, _Refusal | None]]:
        batches = _batches(heads)

        def send(batch: list[_Entry]) -> list[tuple[_Entry, _Refusal | None]]:
            if remaining_seconds() < self._longest_call_seconds:
                return [(entry, _Refusal(OUT_OF_TIME)) for entry in batch]
            return self._send_batch(batch)

        if len(batches) == 1:
            return send(batches[0])
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CALLS, len(batches))) as pool:
            return [outcome for outcomes in pool.map(send, batches) for outcome in outcomes]

    def _send_batch(self, batch: list[_Entry]) -> list[tuple[_Entry, _Refusal | None]]:
        """Each entry with None (accepted) or why SQS did not take it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._sqs.send_message_batch(
                QueueUrl=self._queue_url, Entries=[entry.request() for entry in batch]
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "ClientError"))
            return [(entry, _Refusal(code)) for entry in batch]
        except BotoCoreError as error:
            return [(entry, _Refusal(type(error).__name__)) for entry in batch]
        failed = {item["Id"]: item for item in response.get("Failed", [])}
        return [
            (
                entry,
                None
                if entry.entry_id not in failed
                else _Refusal(
                    str(failed[entry.entry_id].get("Code", "unknown")),
                    final=bool(failed[entry.entry_id].get("SenderFault")),
                ),
            )
            for entry in batch
        ]


def _conversations(entries: Sequence[_Entry]) -> dict[str, deque[_Entry]]:
    """Each conversation's entries in delivery order, conversations in order of appearance."""
    waiting: dict[str, deque[_Entry]] = {}
    for entry in entries:
        waiting.setdefault(entry.conversation, deque()).append(entry)
    return waiting


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
