"""Properties of a batch, whatever its shape: FIFO per conversation, nothing across."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.domain.consumer.consume import Result, consume_batch
from functions.domain.consumer.ports import GraphApiError
from tests.unit.consumer.builders import (
    Call,
    RecordingVisibility,
    ScriptedGraph,
    consumer,
    inbound,
    queued_body,
    record,
    wamid_of,
)

pytestmark = pytest.mark.unit

# What the Graph API answers to one record's send: success, retryable, permanent; or the record
# is unreadable.
FATES = st.sampled_from(["ok", "throttled", "undeliverable", "poison"])


class _PerRecipientGraph(ScriptedGraph):
    """Fails sends by recipient, so the answer does not depend on thread interleaving."""

    def __init__(self, failing: dict[str, int]) -> None:
        super().__init__()
        self.failing = failing

    def send(self, phone_number_id: str, body: Mapping[str, Any]) -> str:
        self.calls.append(Call("send", phone_number_id, body))
        code = self.failing.get(body["context"]["message_id"])
        if code is not None:
            raise GraphApiError(str(code), meta_code=code)
        return f"wamid.OUT{len(self.calls)}"


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(st.tuples(st.integers(0, 3), FATES), min_size=1, max_size=10))
def test_fifo_per_conversation_and_independence_across(batch: list[tuple[int, str]]) -> None:
    records = []
    failing: dict[str, int] = {}
    for conversation, fate in batch:
        if fate == "poison":
            body = "not a record"
        else:
            body = queued_body(inbound(text="hello", sender=f"1650555000{conversation}"))
            if fate != "ok":
                failing[wamid_of(body)] = 130429 if fate == "throttled" else 131026
        records.append(record(body, group=f"c{conversation}"))
    graph = _PerRecipientGraph(failing)
    visibility = RecordingVisibility()

    result = consume_batch(records, consumer(graph, visibility=visibility))

    failed_ids = {item["itemIdentifier"] for item in result.batch_item_failures()}
    for conversation in {c for c, _ in batch}:
        mine = [
            (rec, fate, outcome)
            for rec, (c, fate), outcome in zip(records, batch, result.outcomes, strict=True)
            if c == conversation
        ]
        blocked = False
        for rec, fate, outcome in mine:
            if blocked:
                assert outcome.result is Result.HELD_BACK
                assert rec.message_id in failed_ids
                continue
            expected = {
                "ok": Result.REPLIED,
                "throttled": Result.RETRY,
                "undeliverable": Result.PERMANENT,
                "poison": Result.DEAD_LETTERED,
            }[fate]
            assert outcome.result is expected
            assert (rec.message_id in failed_ids) == expected.failed
            # An unreadable record goes to the DLQ: it never holds back its conversation.
            blocked = expected.failed
    changed = {change.message_id for change in visibility.changes}
    assert changed == failed_ids
