"""How `make demo` judges what the fake Graph API recorded: no network at all."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_pipeline.demo import Case, expects_reply, judge, message_cases, replied_to

pytestmark = pytest.mark.unit


def case(
    expect_reply: bool = True, *, rate_limited: bool = False, late_failure: bool = False
) -> Case:
    return Case(
        "text",
        "text",
        "wamid.x",
        b"",
        expect_reply,
        rate_limited=rate_limited,
        late_failure=late_failure,
    )


def read(wamid: str = "wamid.x", answer: str = "ok") -> dict[str, Any]:
    return {"kind": "read", "answer": answer, "json": {"status": "read", "message_id": wamid}}


def reply(wamid: str = "wamid.x", answer: str = "ok") -> dict[str, Any]:
    return {
        "kind": "send",
        "answer": answer,
        "json": {"type": "text", "to": "1", "context": {"message_id": wamid}},
    }


def test_one_read_and_one_reply_passes() -> None:
    assert judge(case(), [read(), reply()]).problems == []


def test_a_missing_reply_fails() -> None:
    assert judge(case(), [read()]).problems == ["reply missing"]


def test_a_duplicated_reply_fails() -> None:
    assert judge(case(), [read(), reply(), reply()]).problems == ["2 replies (duplicated)"]


def test_a_reply_to_a_type_that_gets_none_fails() -> None:
    problems = judge(case(expect_reply=False), [read(), reply()]).problems
    assert problems == ["replied, but this type gets no reply"]


def test_refused_sends_do_not_count_as_replies() -> None:
    verdict = judge(case(rate_limited=True), [read(), reply(answer="meta_error"), reply()])
    assert (verdict.sends_ok, verdict.sends_refused, verdict.problems) == (1, 1, [])


def test_a_rate_limited_case_needs_the_refusal_to_have_happened() -> None:
    problems = judge(case(rate_limited=True), [read(), reply()]).problems
    assert problems == ["the 130429 was never answered"]


def template(wamid: str = "wamid.x") -> dict[str, Any]:
    return {
        "kind": "send",
        "answer": "ok",
        "json": {"type": "template", "to": "1", "context": {"message_id": wamid}},
    }


def test_a_late_131047_needs_exactly_one_template_after_the_reply() -> None:
    late = case(late_failure=True)
    assert judge(late, [read(), reply(), template()]).problems == []
    assert judge(late, [read(), reply()]).problems == [
        "0 templates after the late 131047 (expected 1)"
    ]
    assert judge(late, [read(), reply(), template(), template()]).problems == [
        "3 replies (duplicated)",
        "2 templates after the late 131047 (expected 1)",
    ]


def test_calls_about_other_messages_are_ignored() -> None:
    assert judge(case(), [read("wamid.other"), reply("wamid.other")]).problems == [
        "no read receipt",
        "reply missing",
    ]


def test_a_reaction_reply_answers_the_message_it_reacts_to() -> None:
    document = {"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "x"}}
    assert replied_to(document) == "wamid.x"
    assert replied_to({"type": "text"}) is None


def test_expectations_follow_the_consumers_reply_rules() -> None:
    by_label = {c.label: c for c in message_cases()}
    # every inbound type is covered, and each case is a webhook of exactly that type
    assert set(by_label) >= {
        "text",
        "image",
        "video",
        "audio",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive button_reply",
        "interactive list_reply",
        "button",
        "reaction",
        "order",
        "system",
        "unsupported",
    }
    for label, item in by_label.items():
        [message] = json.loads(item.body)["entry"][0]["changes"][0]["value"]["messages"]
        assert message["type"] == item.message_type, label
        assert message["id"] == item.wamid
    # reactions, system and unsupported messages never get a reply; a greeting does
    assert not by_label["reaction"].expect_reply
    assert not by_label["system"].expect_reply
    assert not by_label["unsupported"].expect_reply
    assert by_label["text"].expect_reply
    assert expects_reply(by_label["image"].body)
