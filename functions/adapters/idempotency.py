"""Once per wamid: Powertools Idempotency on DynamoDB, and the reply ledger in the same table.

`PowertoolsOncePerMessage` keys Powertools' `idempotent_function` on the wamid (a stable key
prefix, so renaming the Lambda does not forget what was answered), keeps completed records for
8 days (Meta redelivers for up to 7), and registers the Lambda context so an execution that
times out leaves an in-progress record that expires with it, not an hour later.

`DynamoDbReplyLedger` writes `reply#<wamid>` with a conditional put right before a send and
deletes it when the Graph API refused the send; see `functions/domain/consumer/consume.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from functions.domain.consumer.ports import AlreadyInProgress, OnceResult, StoreUnavailable

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_ATTRIBUTE: Final = "id"
EXPIRY_ATTRIBUTE: Final = "expiration"
EXPIRES_AFTER_SECONDS: Final = 8 * 24 * 3600  # > Meta's 7 days of webhook redelivery
KEY_PREFIX: Final = "whatsapp-relay#reply-once"
LEDGER_PREFIX: Final = "reply#"


@lru_cache(maxsize=1)
def idempotency_config() -> IdempotencyConfig:
    """The one config of the execution environment; the handler registers each context on it."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(
        event_key_jmespath="wamid",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=EXPIRES_AFTER_SECONDS,
    )


def register_lambda_context(context: LambdaContext) -> None:
    idempotency_config().register_lambda_context(context)


class PowertoolsOncePerMessage:
    """`OncePerMessage` over one DynamoDB table."""

    def __init__(self, dynamodb_client: DynamoDBClient, table_name: str) -> None:
        self._client = dynamodb_client
        self._table_name = table_name
        # Powertools keeps the first configuration a persistence layer sees: one per adapter.
        self._persistence: DynamoDBPersistenceLayer | None = None

    def run(self, key: str, work: Callable[[], Mapping[str, Any]]) -> OnceResult:
        from aws_lambda_powertools.utilities.idempotency import idempotent_function
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyInconsistentStateError,
            IdempotencyItemAlreadyExistsError,
            IdempotencyPersistenceLayerError,
        )

        ran = False

        def reply_once(message: Mapping[str, str]) -> dict[str, Any]:
            nonlocal ran
            ran = True
            return dict(work())

        guarded = idempotent_function(
            reply_once,
            data_keyword_argument="message",
            persistence_store=self._persistence_layer(),
            config=idempotency_config(),
            key_prefix=KEY_PREFIX,
        )
        try:
            value = guarded(message={"wamid": key})
        except IdempotencyAlreadyInProgressError:
            raise AlreadyInProgress(key) from None
        except (
            IdempotencyPersistenceLayerError,
            IdempotencyInconsistentStateError,
            IdempotencyItemAlreadyExistsError,
        ) as error:
            raise StoreUnavailable(f"idempotency store: {type(error).__name__}") from None
        return OnceResult(value=value if isinstance(value, Mapping) else {}, replayed=not ran)

    def _persistence_layer(self) -> DynamoDBPersistenceLayer:
        if self._persistence is None:
            from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

            self._persistence = DynamoDBPersistenceLayer(
                table_name=self._table_name,
                key_attr=KEY_ATTRIBUTE,
                expiry_attr=EXPIRY_ATTRIBUTE,
                boto3_client=self._client,
            )
        return self._persistence


class DynamoDbReplyLedger:
    """`ReplyLedger`: `reply#<wamid>` items with the table's TTL attribute."""

    def __init__(
        self,
        dynamodb_client: DynamoDBClient,
        table_name: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = dynamodb_client
        self._table_name = table_name
        self._clock = clock

    def claim(self, wamid: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        now = int(self._clock())
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item={
                    KEY_ATTRIBUTE: {"S": LEDGER_PREFIX + wamid},
                    EXPIRY_ATTRIBUTE: {"N": str(now + EXPIRES_AFTER_SECONDS)},
                    "claimed_at": {"N": str(now)},
                },
                # DynamoDB's TTL deletes lazily: an expired claim counts as absent.
                ConditionExpression="attribute_not_exists(#id) OR #exp < :now",
                ExpressionAttributeNames={"#id": KEY_ATTRIBUTE, "#exp": EXPIRY_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailable(f"reply ledger: {_code(error)}") from None
        except BotoCoreError as error:
            raise StoreUnavailable(f"reply ledger: {type(error).__name__}") from None
        return True

    def release(self, wamid: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_item(
                TableName=self._table_name, Key={KEY_ATTRIBUTE: {"S": LEDGER_PREFIX + wamid}}
            )
        except ClientError as error:
            raise StoreUnavailable(f"reply ledger: {_code(error)}") from None
        except BotoCoreError as error:
            raise StoreUnavailable(f"reply ledger: {type(error).__name__}") from None


def _code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))
