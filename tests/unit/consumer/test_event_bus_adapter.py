"""The EventBridge adapter with a stand-in client: calls of at most ten entries, what the bus
refuses put once more, and errors returned rather than raised."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from functions.adapters.event_bus import SOURCE, EventBridgePublisher
from functions.domain.consumer.ports import RelayEvent

pytestmark = pytest.mark.unit


def event(n: int, size: int = 10) -> RelayEvent:
    return RelayEvent(
        "reply.sent",
        {
            "eventId": f"reply.sent:w{n}:0",
            "occurredAt": "2026-11-25T09:00:00.000Z",
            "pad": "x" * size,
        },
    )


@dataclass
class StandInEvents:
    """put_events answering from a script: a set of event ids to refuse per call, or an error."""

    refuse: list[set[str] | Exception] = field(default_factory=list)
    calls: list[list[dict[str, Any]]] = field(default_factory=list)

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        script = self.refuse.pop(0) if self.refuse else set()
        if isinstance(script, Exception):
            raise script
        results = [
            {"ErrorCode": "ThrottlingException"}
            if json.loads(entry["Detail"])["eventId"] in script
            else {"EventId": "e"}
            for entry in Entries
        ]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def publisher(client: StandInEvents) -> EventBridgePublisher:
    return EventBridgePublisher(cast(Any, client), "relay-bus")


def test_entries_carry_source_type_detail_time_and_bus_in_calls_of_ten() -> None:
    client = StandInEvents()

    assert publisher(client).publish([event(n) for n in range(25)]) == []

    assert [len(call) for call in client.calls] == [10, 10, 5]
    entry = client.calls[0][0]
    assert entry["Source"] == SOURCE == "whatsapp-relay"
    assert entry["DetailType"] == "reply.sent"
    assert entry["EventBusName"] == "relay-bus"
    assert json.loads(entry["Detail"])["eventId"] == "reply.sent:w0:0"
    assert entry["Time"].isoformat() == "2026-11-25T09:00:00+00:00"


def test_large_events_split_a_call_before_the_size_limit() -> None:
    client = StandInEvents()

    publisher(client).publish([event(n, size=90_000) for n in range(4)])

    assert [len(call) for call in client.calls] == [2, 2]


def test_refused_entries_are_put_once_more_and_what_still_fails_is_returned() -> None:
    client = StandInEvents(refuse=[{"reply.sent:w1:0", "reply.sent:w2:0"}, {"reply.sent:w2:0"}])

    failed = publisher(client).publish([event(n) for n in range(3)])

    assert [len(call) for call in client.calls] == [3, 2]
    assert [(f.event.event_id, f.error_code) for f in failed] == [
        ("reply.sent:w2:0", "ThrottlingException")
    ]


def test_a_failed_call_is_returned_with_its_code_never_raised() -> None:
    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutEvents")
    unreachable = EndpointConnectionError(endpoint_url="https://events")
    client = StandInEvents(refuse=[denied, unreachable])

    failed = publisher(client).publish([event(0)])

    assert [f.error_code for f in failed] == ["EndpointConnectionError"]
    assert len(client.calls) == 2
