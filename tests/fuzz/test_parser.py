"""Property 3: `parse_delivery` over any JSON value.

Its contract (docs/contract.md, Ingest behaviour 3 and 5; the parser's docstring): only a value
that is not a JSON object raises, and then `InvalidPayload`; inside an object, a malformed piece
is skipped and named in `problems` by its path, never by its content; every message the
delivery holds is found, and no status or error is taken for one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from functions.domain.whatsapp.webhook import InvalidPayload, WebhookDelivery, parse_delivery
from tests.fuzz.harness import WHATSAPP_OBJECT, expected_messages, fuzz_settings
from tests.fuzz.strategies import (
    WEBHOOK_KEYS,
    any_json,
    json_values,
    mutated_deliveries,
    valid_deliveries,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

# A problem is a path into the delivery (Meta's key names and list indices), then plain words
# about what is wrong with it. Nothing else: no value of the delivery can appear in one.
_PATH = re.compile(r"entry(?:\[\d+\])?(?:\.([a-z_]+)(?:\[\d+\])?)*")
_PROBLEM_WORDS = frozenset(
    {"must", "be", "a", "an", "list", "object", "non-empty", "string", "is", "missing"}
    | {"message(s)", "skipped"}
)


def check_problems_name_paths(delivery: WebhookDelivery) -> None:
    for problem in delivery.problems:
        assert isinstance(problem, str)
        path = _PATH.match(problem)
        assert path is not None, f"{problem!r} does not start with a path"
        for segment in re.findall(r"\.([a-z_]+)", path.group(0)):
            assert segment in WEBHOOK_KEYS, f"{segment!r} in {problem!r} is not a key of Meta's"
        words = problem[path.end() :].replace(":", " ").split()
        for word in words:
            assert word.isdigit() or word in _PROBLEM_WORDS, f"{word!r} in {problem!r}"


def check_parsed(document: Any) -> WebhookDelivery:
    """The parser's promises for one value, compared with the suites' own count."""
    if not isinstance(document, dict):
        with pytest.raises(InvalidPayload):
            parse_delivery(document)
        return WebhookDelivery()
    delivery = parse_delivery(document)  # any exception fails the test as it is
    check_problems_name_paths(delivery)
    found = [(m.message.wamid, m.business.phone_number_id) for m in delivery.messages]
    expected = [(m.wamid, m.phone_number_id) for m in expected_messages(document)]
    assert found == expected
    for received in delivery.messages:
        assert isinstance(received.message.raw, dict)
    assert all(isinstance(field, str) for field in delivery.ignored_fields)
    return delivery


@fuzz_settings(max_examples=300)
@given(any_json)
@example(None)
@example([])
@example("whatsapp_business_account")
@example({"object": WHATSAPP_OBJECT, "entry": {"changes": []}})
@example({"entry": [None, 1, "x", [], {"changes": [None, {"value": []}]}]})
@example({"entry": [{"changes": [{"value": {"messages": [{"id": ""}, {"id": 7}, {}]}}]}]})
def test_any_json_value(document: Any) -> None:
    check_parsed(document)


@fuzz_settings(max_examples=250)
@given(st.one_of(valid_deliveries, mutated_deliveries))
def test_valid_and_mutated_deliveries(document: Any) -> None:
    check_parsed(document)


@fuzz_settings(max_examples=200)
@given(json_values(keys=st.sampled_from(WEBHOOK_KEYS), max_leaves=40))
def test_documents_made_of_meta_keys(document: Any) -> None:
    check_parsed(document)


def _deep_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# Nearly as deep as `json.loads` goes on any supported interpreter (about 1,000 levels on 3.11).
@pytest.mark.parametrize("depth", [100, 800])
@pytest.mark.parametrize(
    "where",
    ["object", "entry", "changes", "field", "value", "metadata", "messages", "id", "statuses"],
)
def test_deep_values_anywhere(depth: int, where: str) -> None:
    deep = _deep_list(depth)
    document: dict[str, Any] = {
        "object": WHATSAPP_OBJECT,
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "1"},
                            "messages": [{"id": "wamid.A", "from": "1", "type": "text"}],
                            "statuses": [{"id": "wamid.S", "status": "read"}],
                        },
                    }
                ],
            }
        ],
    }
    change = document["entry"][0]["changes"][0]
    targets: dict[str, tuple[Any, str]] = {
        "object": (document, "object"),
        "entry": (document, "entry"),
        "changes": (document["entry"][0], "changes"),
        "field": (change, "field"),
        "value": (change, "value"),
        "metadata": (change["value"], "metadata"),
        "messages": (change["value"], "messages"),
        "id": (change["value"]["messages"][0], "id"),
        "statuses": (change["value"], "statuses"),
    }
    parent, key = targets[where]
    parent[key] = deep

    check_parsed(json.loads(json.dumps(document)))
