"""The local emulator's own process (`local_pipeline.emulator`): its patches of moto keep moto's
answers. Here: TransactWriteItems, which backs up only the items it names instead of copying
whole tables, is still all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_pipeline.emulator import Emulator, aws_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    with Emulator() as emulator:
        yield aws_client("dynamodb", emulator.endpoint)


def _table(dynamodb: Any, *, range_key: bool = False) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    keys = [("id", "HASH"), *([("sort", "RANGE")] if range_key else [])]
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _key(item_id: str, sort: str | None) -> dict[str, Any]:
    return {"id": {"S": item_id}, **({"sort": {"S": sort}} if sort is not None else {})}


def _items(dynamodb: Any, table: str) -> dict[str, str]:
    items = dynamodb.scan(TableName=table)["Items"]
    return {item["id"]["S"] + item.get("sort", {}).get("S", ""): item["v"]["S"] for item in items}


@pytest.mark.parametrize("sort", [None, "s"], ids=["hash key", "hash and range key"])
def test_a_cancelled_transaction_leaves_every_item_as_it_was(
    dynamodb: Any, sort: str | None
) -> None:
    table = _table(dynamodb, range_key=sort is not None)
    for item_id in ("kept", "changed", "removed"):
        dynamodb.put_item(TableName=table, Item={**_key(item_id, sort), "v": {"S": "before"}})
    before = _items(dynamodb, table)

    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": _key("changed", sort),
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "after"}},
                    }
                },
                {"Put": {"TableName": table, "Item": {**_key("new", sort), "v": {"S": "new"}}}},
                {"Delete": {"TableName": table, "Key": _key("removed", sort)}},
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": _key("kept", sort),
                        "ConditionExpression": "v = :other",
                        "ExpressionAttributeValues": {":other": {"S": "something else"}},
                    }
                },
            ]
        )

    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _items(dynamodb, table) == before


def test_a_transaction_that_holds_writes_every_item(dynamodb: Any) -> None:
    table = _table(dynamodb)
    dynamodb.put_item(TableName=table, Item={**_key("changed", None), "v": {"S": "before"}})

    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": table,
                    "Key": _key("changed", None),
                    "UpdateExpression": "SET v = :v",
                    "ConditionExpression": "v = :before",
                    "ExpressionAttributeValues": {":v": {"S": "after"}, ":before": {"S": "before"}},
                }
            },
            {"Put": {"TableName": table, "Item": {**_key("new", None), "v": {"S": "new"}}}},
        ]
    )

    assert _items(dynamodb, table) == {"changed": "after", "new": "new"}
