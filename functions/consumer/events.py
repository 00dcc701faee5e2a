"""The SQS event, read into the use case's plain records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from functions.domain.consumer.consume import InboxRecord
from functions.domain.whatsapp.queued_record import status_reply_wamid


def inbox_records(event: Mapping[str, Any]) -> list[InboxRecord]:
    records = event.get("Records")
    if not isinstance(records, list):
        return []
    return [_record(raw) for raw in records if isinstance(raw, Mapping)]


def _record(raw: Mapping[str, Any]) -> InboxRecord:
    attributes = raw.get("attributes")
    attributes = attributes if isinstance(attributes, Mapping) else {}
    message_id = str(raw.get("messageId") or "")
    try:
        receive_count = int(attributes.get("ApproximateReceiveCount") or 1)
    except (TypeError, ValueError):
        receive_count = 1
    body = raw.get("body")
    body = body if isinstance(body, str) else ""
    return InboxRecord(
        enqueued_at=_epoch_seconds(attributes.get("SentTimestamp")),
        message_id=message_id,
        body=body,
        group_id=str(attributes.get("MessageGroupId") or _status_group(body) or message_id),
        receive_count=max(1, receive_count),
        receipt_handle=str(raw.get("receiptHandle") or ""),
        event_source_arn=str(raw.get("eventSourceARN") or ""),
    )


def _epoch_seconds(milliseconds: object) -> float | None:
    """SQS's `SentTimestamp` (epoch milliseconds, as text) in seconds."""
    try:
        return int(str(milliseconds)) / 1000
    except ValueError:
        return None


def _status_group(body: str) -> str | None:
    """A status record (the status queue has no groups) runs in a group of its reply: two
    statuses of one reply in one batch are followed one after the other, never at once."""
    reply_wamid = status_reply_wamid(body)
    return f"reply:{reply_wamid}" if reply_wamid else None
