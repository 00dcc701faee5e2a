"""`EventPublisher` on EventBridge: PutEvents to the bus named by EVENT_BUS_NAME.

Entries go in calls of at most 10 (PutEvents' limit) and about 200 KB (under its 256 KB); an
entry the bus refuses (`ErrorCode` in its answer: throttling, an internal failure) is put once
more at once, in the same invocation; botocore's standard retries cover throttled and failed
calls. What still fails is returned, never raised: the caller counts and logs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from functions.domain.consumer.ports import RelayEvent, Unpublished

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SOURCE: Final = "whatsapp-relay"
MAX_ENTRIES_PER_CALL: Final = 10
MAX_BYTES_PER_CALL: Final = 200_000  # PutEvents takes 256 KB; room for the envelope


class EventBridgePublisher:
    def __init__(self, events_client: EventBridgeClient, bus_name: str) -> None:
        self._client = events_client
        self._bus = bus_name

    def publish(self, events: Sequence[RelayEvent]) -> list[Unpublished]:
        refused = self._put(events)
        if not refused:
            return []
        # Once more, at once, only what the bus refused (entry errors are mostly throttling).
        return self._put([failure.event for failure in refused])

    def _put(self, events: Sequence[RelayEvent]) -> list[Unpublished]:
        from botocore.exceptions import BotoCoreError, ClientError

        refused: list[Unpublished] = []
        for chunk in _chunks(events):
            entries = [self._entry(event) for event in chunk]
            try:
                answer = self._client.put_events(Entries=entries)
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", "unknown"))
                refused += [Unpublished(event, code) for event in chunk]
                continue
            except BotoCoreError as error:
                refused += [Unpublished(event, type(error).__name__) for event in chunk]
                continue
            for event, result in zip(chunk, answer.get("Entries", []), strict=False):
                entry_code = result.get("ErrorCode")
                if entry_code:
                    refused.append(Unpublished(event, entry_code))
        return refused

    def _entry(self, event: RelayEvent) -> PutEventsRequestEntryTypeDef:
        occurred = event.detail.get("occurredAt")
        entry: PutEventsRequestEntryTypeDef = {
            "Source": SOURCE,
            "DetailType": event.detail_type,
            "Detail": _json(event),
            "EventBusName": self._bus,
        }
        if isinstance(occurred, str):
            entry["Time"] = datetime.fromisoformat(occurred.replace("Z", "+00:00"))
        return entry


def _json(event: RelayEvent) -> str:
    return json.dumps(event.detail, ensure_ascii=False, separators=(",", ":"))


def _chunks(events: Sequence[RelayEvent]) -> Iterator[list[RelayEvent]]:
    chunk: list[RelayEvent] = []
    size = 0
    for event in events:
        entry_size = len(_json(event).encode()) + len(event.detail_type) + len(SOURCE)
        if chunk and (len(chunk) == MAX_ENTRIES_PER_CALL or size + entry_size > MAX_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append(event)
        size += entry_size
    if chunk:
        yield chunk
