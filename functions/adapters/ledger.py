"""The consumer's ledger on DynamoDB: one item per inbound wamid, one per reply, in the table
named by `IDEMPOTENCY_TABLE` (partition key `id`, TTL attribute `expiration`).

`msg#<wamid>` holds the message's state, the lease of the attempt working on it, its own failed
attempts, and a claim (`claim_<slot>`) and a record (`sent_<slot>`) per reply slot. `reply#<reply
wamid>` remembers what was sent, to whom, in answer to what (and in which conversation), so its
statuses can be followed: one timestamp per status (`status_<name>`, the first one Meta gave), a
failure's code, and the follow-up of a late failure (`followup_*`: who took it, sends claimed and
refused, the follow-up's wamid).

An answered message costs two writes: `begin` (a conditional UpdateItem that also claims the
first slot) and `record_sent` (one TransactWriteItems that records the send and puts the reply).
With a reply handler the first slot is claimed by a write of its own (`claim`): three. A status
costs one: `record_status` (a conditional UpdateItem returning the reply as it was).
Why not Powertools Idempotency: docs/decisions.md.

A burst (messages of one conversation answered together) is held by its first message, the
head: its item remembers the other messages (`members`) with its first claim, and the write that
finishes it — or dead-letters it — marks each member in the same transaction ("done, answered
as part of burst <head>"), so no member is ever answered twice or left half done. Each member
was taken by its own `begin` (`burst_head`), which also finds the duplicates among them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from functions.domain.consumer.ports import (
    IN_BURST,
    BeginResult,
    Begun,
    FailedAttempt,
    Finished,
    FollowUp,
    MessageHistory,
    MessageStatus,
    ReplyRecord,
    SentReply,
    StatusWrite,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

KEY_ATTRIBUTE: Final = "id"
EXPIRY_ATTRIBUTE: Final = "expiration"
MESSAGE_PREFIX: Final = "msg#"
REPLY_PREFIX: Final = "reply#"
# Longer than Meta's 7 days of webhook redelivery: a late duplicate is still recognised.
MESSAGE_TTL_SECONDS: Final = 8 * 24 * 3600
# A reply's statuses can come until Meta gives up delivering it (30 days), plus redeliveries.
REPLY_TTL_SECONDS: Final = 38 * 24 * 3600
NOT_REPORTED: Final = "-"  # Meta accepted a send without returning its wamid

_STATUS_VALUES: Final = {
    MessageStatus.ACTIVE: "active",
    MessageStatus.DONE: "done",
    MessageStatus.DEAD_LETTERED: "dead_lettered",
}
_STATUSES_BY_VALUE: Final = {value: status for status, value in _STATUS_VALUES.items()}
_NAMES: Final = {"#id": KEY_ATTRIBUTE, "#status": "status", "#exp": EXPIRY_ATTRIBUTE}
# The statuses a reply item keeps a timestamp for (`status_<name>`); nothing else is written.
REPLY_STATUSES: Final = frozenset({"sent", "delivered", "read", "played", "failed"})
STATUS_ATTRIBUTE_PREFIX: Final = "status_"


class DynamoDbLedger:
    """`Ledger` over one DynamoDB table."""

    def __init__(self, dynamodb_client: DynamoDBClient, table_name: str) -> None:
        self._client = dynamodb_client
        self._table = table_name

    def begin(
        self,
        wamid: str,
        *,
        now: float,
        lease_until: float,
        claim_slot: int | None,
        enqueued_at: float | None,
        burst_head: str | None = None,
    ) -> Begun:
        from botocore.exceptions import BotoCoreError, ClientError

        update = (
            "SET #status = :active, lease_until = :lease, #exp = :exp, "
            "first_seen_at = if_not_exists(first_seen_at, :now)"
        )
        if claim_slot is not None:
            update += f", claim_{claim_slot} = :now"
        # Free, or abandoned by an attempt whose lease ran out, or dead-lettered before this
        # copy was enqueued (a redrive: SQS gives a redriven message a new enqueue time).
        condition = "attribute_not_exists(#id) OR (#status = :active AND lease_until < :now)"
        values: dict[str, AttributeValueTypeDef] = {
            ":active": {"S": _STATUS_VALUES[MessageStatus.ACTIVE]},
            ":lease": _number(lease_until),
            ":exp": _number(int(now) + MESSAGE_TTL_SECONDS),
            ":now": _number(now),
        }
        if enqueued_at is not None:
            condition += " OR (#status = :dead AND dead_lettered_at < :enqueued)"
            values[":dead"] = {"S": _STATUS_VALUES[MessageStatus.DEAD_LETTERED]}
            values[":enqueued"] = _number(enqueued_at)
        if burst_head is not None:
            update += ", burst_head = :head"
            values[":head"] = {"S": burst_head}
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=_key(MESSAGE_PREFIX + wamid),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                raise StoreUnavailable(f"ledger: {_error_code(error)}") from None
            old_item: Any = error.response.get("Item") or {}  # ReturnValuesOnConditionCheckFailure
            history = _history(old_item)
            return Begun(_refusal(history), history)
        except BotoCoreError as error:
            raise StoreUnavailable(f"ledger: {type(error).__name__}") from None
        return Begun(BeginResult.STARTED, _history(answer.get("Attributes") or {}))

    def claim(self, wamid: str, slot: int, *, now: float, members: Sequence[str] = ()) -> None:
        update = f"SET claim_{slot} = :now"
        values: dict[str, AttributeValueTypeDef] = {":now": _number(now)}
        if members:
            # The burst is fixed by its first claim: a later attempt answers the same messages.
            update += ", members = if_not_exists(members, :members)"
            values[":members"] = {"L": [{"S": member} for member in members]}
        self._update(wamid, update, values)

    def record_sent(
        self, reply: SentReply, *, claim_next: int | None, finished: Finished | None
    ) -> None:
        update = f"SET sent_{reply.slot} = :reply"
        values: dict[str, AttributeValueTypeDef] = {
            ":reply": {"S": reply.reply_wamid or NOT_REPORTED}
        }
        if claim_next is not None:
            update += f", claim_{claim_next} = :now"
            values[":now"] = _number(reply.sent_at)
        if finished is not None:
            update += ", #status = :done, outcome = :outcome, lease_until = :zero"
            values |= {
                ":done": {"S": _STATUS_VALUES[MessageStatus.DONE]},
                ":outcome": {"S": finished.outcome},
                ":zero": _number(0),
            }
        message_update: Any = {
            "TableName": self._table,
            "Key": _key(MESSAGE_PREFIX + reply.inbound_wamid),
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
        }
        if finished is not None:
            message_update["ExpressionAttributeNames"] = {"#status": "status"}
        items: list[TransactWriteItemTypeDef] = [{"Update": message_update}]
        if reply.reply_wamid:  # without one there is nothing to follow statuses by
            items.append({"Put": {"TableName": self._table, "Item": _reply_item(reply)}})
        if finished is not None:
            items += self._members_done(reply.inbound_wamid, finished.members)
        self._write(items)

    def finish(self, wamid: str, finished: Finished, *, release_slot: int | None) -> None:
        update = "SET #status = :done, outcome = :outcome, lease_until = :zero"
        values: dict[str, AttributeValueTypeDef] = {
            ":done": {"S": _STATUS_VALUES[MessageStatus.DONE]},
            ":outcome": {"S": finished.outcome},
            ":zero": _number(0),
        }
        if finished.error_code is not None:
            update += ", error_code = :code"
            values[":code"] = {"S": finished.error_code}
        if release_slot is not None:
            update += f" REMOVE claim_{release_slot}"
        self._write(
            [
                {"Update": self._request(wamid, update, values, names={"#status": "status"})},
                *self._members_done(wamid, finished.members),
            ]
        )

    def record_failure(self, wamid: str, failure: FailedAttempt) -> None:
        status = MessageStatus.DEAD_LETTERED if failure.dead_lettered else MessageStatus.ACTIVE
        update = (
            "SET attempts = :attempts, error_code = :code, error_class = :class, "
            "last_attempt_at = :at, lease_until = :zero, #status = :status"
        )
        values: dict[str, AttributeValueTypeDef] = {
            ":attempts": _number(failure.attempts),
            ":code": {"S": failure.error_code},
            ":class": {"S": failure.error_class},
            ":at": _number(failure.at),
            ":zero": _number(0),
            ":status": {"S": _STATUS_VALUES[status]},
        }
        if failure.dead_lettered:
            update += ", dead_lettered_at = :at"
        if failure.release_slot is not None:
            update += f" REMOVE claim_{failure.release_slot}"
        members: list[TransactWriteItemTypeDef] = [
            # Held back behind it: free for the next attempt, like the head.
            {"Update": self._request(member, "SET lease_until = :zero", {":zero": _number(0)})}
            for member in failure.members
        ]
        if failure.dead_lettered:
            # The burst went to the DLQ together: its members are dead letters too (a redrive
            # of them, enqueued later, starts afresh like any other).
            members = [
                {
                    "Update": self._request(
                        member,
                        "SET #status = :dead, dead_lettered_at = :at, error_code = :code, "
                        "error_class = :class, burst_head = :head, lease_until = :zero",
                        {
                            ":dead": {"S": _STATUS_VALUES[MessageStatus.DEAD_LETTERED]},
                            ":at": _number(failure.at),
                            ":code": {"S": failure.error_code},
                            ":class": {"S": failure.error_class},
                            ":head": {"S": wamid},
                            ":zero": _number(0),
                        },
                        names={"#status": "status"},
                    )
                }
                for member in failure.members
            ]
        self._write(
            [
                {"Update": self._request(wamid, update, values, names={"#status": "status"})},
                *members,
            ]
        )

    # --- the statuses of replies ----------------------------------------------------------------

    def record_status(self, write: StatusWrite) -> ReplyRecord | None:
        from botocore.exceptions import BotoCoreError, ClientError

        if write.status not in REPLY_STATUSES:
            raise ValueError(f"not a status a reply keeps: {write.status!r}")
        attribute = STATUS_ATTRIBUTE_PREFIX + write.status
        update = f"SET {attribute} = if_not_exists({attribute}, :at)"
        values: dict[str, AttributeValueTypeDef] = {":at": _number(write.at)}
        for name, value in (
            ("failed_code", write.error_code),
            ("failed_class", write.error_class),
            ("followup_owner", write.follow_up_owner),
        ):
            if value is not None:
                update += f", {name} = if_not_exists({name}, :{name})"
                values[f":{name}"] = {"S": value}
        if write.claim_first_attempt:
            update += ", followup_attempts = if_not_exists(followup_attempts, :one)"
            values[":one"] = _number(1)
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=_key(REPLY_PREFIX + write.reply_wamid),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(#id)",
                ExpressionAttributeNames={"#id": KEY_ATTRIBUTE},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if _error_code(error) == "ConditionalCheckFailedException":
                return None  # no such reply: the condition kept the write from creating one
            raise StoreUnavailable(f"ledger: {_error_code(error)}") from None
        except BotoCoreError as error:
            raise StoreUnavailable(f"ledger: {type(error).__name__}") from None
        return reply_record(answer.get("Attributes") or {})

    def claim_follow_up(self, reply_wamid: str, *, owner: str, attempt: int, now: float) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        previous = attempt - 1
        # Every earlier attempt claimed and refused (an absent count is 0): none is in doubt.
        counts = " AND ".join(
            f"followup_{name} = :previous"
            if previous
            else f"(attribute_not_exists(followup_{name}) OR followup_{name} = :previous)"
            for name in ("attempts", "refused")
        )
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(REPLY_PREFIX + reply_wamid),
                UpdateExpression="SET followup_attempts = :attempt, followup_claimed_at = :now",
                ConditionExpression=(
                    "followup_owner = :owner AND attribute_not_exists(followup_wamid) "
                    f"AND attribute_not_exists(followup_gave_up) AND {counts}"
                ),
                ExpressionAttributeValues={
                    ":attempt": _number(attempt),
                    ":previous": _number(previous),
                    ":owner": {"S": owner},
                    ":now": _number(now),
                },
            )
        except ClientError as error:
            if _error_code(error) == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailable(f"ledger: {_error_code(error)}") from None
        except BotoCoreError as error:
            raise StoreUnavailable(f"ledger: {type(error).__name__}") from None
        return True

    def record_follow_up(self, follow_up: SentReply) -> None:
        if follow_up.original is None:
            raise ValueError("a follow-up names the reply it follows up")
        original_update: Any = {
            "TableName": self._table,
            "Key": _key(REPLY_PREFIX + follow_up.original),
            "UpdateExpression": (
                "SET followup_wamid = :wamid, followup_kind = :kind, followup_at = :at"
            ),
            "ExpressionAttributeValues": {
                ":wamid": {"S": follow_up.reply_wamid or NOT_REPORTED},
                ":kind": {"S": follow_up.kind},
                ":at": _number(follow_up.sent_at),
            },
        }
        if not follow_up.reply_wamid:
            self._call(lambda: self._client.update_item(**original_update))
            return
        self._call(
            lambda: self._client.transact_write_items(
                TransactItems=[
                    {"Update": original_update},
                    {"Put": {"TableName": self._table, "Item": _reply_item(follow_up)}},
                ]
            )
        )

    def settle_follow_up(
        self, reply_wamid: str, *, refused: int, error_code: str, gave_up: bool
    ) -> None:
        update = "SET followup_refused = :refused, followup_error = :code"
        values: dict[str, AttributeValueTypeDef] = {
            ":refused": _number(refused),
            ":code": {"S": error_code},
        }
        if gave_up:
            update += ", followup_gave_up = :yes"
            values[":yes"] = {"BOOL": True}
        request: Any = {
            "TableName": self._table,
            "Key": _key(REPLY_PREFIX + reply_wamid),
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
        }
        self._call(lambda: self._client.update_item(**request))

    # ------------------------------------------------------------------------------------------

    def _update(
        self,
        wamid: str,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        *,
        names: dict[str, str] | None = None,
    ) -> None:
        request = self._request(wamid, update, values, names=names)
        self._call(lambda: self._client.update_item(**request))

    def _request(
        self,
        wamid: str,
        update: str,
        values: dict[str, AttributeValueTypeDef],
        *,
        names: dict[str, str] | None = None,
    ) -> Any:
        request: Any = {
            "TableName": self._table,
            "Key": _key(MESSAGE_PREFIX + wamid),
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        return request

    def _members_done(self, head: str, members: Sequence[str]) -> list[TransactWriteItemTypeDef]:
        """The burst's other messages: done, answered as part of `head`'s burst."""
        return [
            {
                "Update": self._request(
                    member,
                    "SET #status = :done, outcome = :outcome, burst_head = :head, "
                    "lease_until = :zero",
                    {
                        ":done": {"S": _STATUS_VALUES[MessageStatus.DONE]},
                        ":outcome": {"S": IN_BURST},
                        ":head": {"S": head},
                        ":zero": _number(0),
                    },
                    names={"#status": "status"},
                )
            }
            for member in members
        ]

    def _write(self, items: list[TransactWriteItemTypeDef]) -> None:
        """One item: an UpdateItem; more (a reply to remember, a burst's members): one
        transaction, all or nothing."""
        if len(items) == 1 and "Update" in items[0]:
            request = items[0]["Update"]
            self._call(lambda: self._client.update_item(**request))
            return
        self._call(lambda: self._client.transact_write_items(TransactItems=items))

    @staticmethod
    def _call(operation: Callable[[], object]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            operation()
        except ClientError as error:
            raise StoreUnavailable(f"ledger: {_error_code(error)}") from None
        except BotoCoreError as error:
            raise StoreUnavailable(f"ledger: {type(error).__name__}") from None


def message_history(item: Mapping[str, Any]) -> MessageHistory:
    """A `msg#` item (as DynamoDB returns it) read back; also for the operator tools."""
    return _history(item)


def reply_record(item: Mapping[str, Any]) -> ReplyRecord | None:
    """A `reply#` item (as DynamoDB returns it) read back; None for no item."""
    key = str(item.get(KEY_ATTRIBUTE, {}).get("S", ""))
    if not key.startswith(REPLY_PREFIX):
        return None
    try:
        message = json.loads(item.get("message", {}).get("S", "{}"))
    except ValueError:
        message = {}
    original = _text(item, "original")
    followup_wamid = _text(item, "followup_wamid")
    return ReplyRecord(
        reply=SentReply(
            reply_wamid=key.removeprefix(REPLY_PREFIX),
            inbound_wamid=_text(item, "inbound_wamid") or "",
            slot=int(_num(item, "slot") or 0),
            kind=_text(item, "kind") or "reply",
            phone_number_id=_text(item, "phone_number_id") or "",
            recipient={
                name: str(value.get("S", ""))
                for name, value in item.get("recipient", {}).get("M", {}).items()
            },
            message=message if isinstance(message, Mapping) else {},
            decision=_text(item, "decision") or "",
            sent_at=_num(item, "sent_at") or 0.0,
            inbound_at=_num(item, "inbound_at"),
            in_reply_to=_text(item, "in_reply_to"),
            burst=tuple(str(entry.get("S", "")) for entry in item.get("burst", {}).get("L", [])),
            conversation_id=_text(item, "conversation_id") or "",
            original=original,
            generation=int(_num(item, "generation") or 0),
        ),
        statuses={
            name.removeprefix(STATUS_ATTRIBUTE_PREFIX): float(value["N"])
            for name, value in item.items()
            if name.startswith(STATUS_ATTRIBUTE_PREFIX)
            and name.removeprefix(STATUS_ATTRIBUTE_PREFIX) in REPLY_STATUSES
            and "N" in value
        },
        failed_code=_text(item, "failed_code"),
        failed_class=_text(item, "failed_class"),
        follow_up=FollowUp(
            owner=_text(item, "followup_owner"),
            attempts=int(_num(item, "followup_attempts") or 0),
            refused=int(_num(item, "followup_refused") or 0),
            reply_wamid=None
            if followup_wamid is None
            else ("" if followup_wamid == NOT_REPORTED else followup_wamid),
            kind=_text(item, "followup_kind"),
            gave_up=bool(item.get("followup_gave_up", {}).get("BOOL", False)),
            error_code=_text(item, "followup_error"),
        ),
    )


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    return str(value) if value is not None else None


def _num(item: Mapping[str, Any], name: str) -> float | None:
    value = item.get(name, {}).get("N")
    return float(value) if value is not None else None


def _history(item: Mapping[str, Any]) -> MessageHistory:
    if not item:
        return MessageHistory()
    sent: dict[int, str] = {}
    claimed: set[int] = set()
    for name, value in item.items():
        prefix, _, index = name.rpartition("_")
        if not index.isdigit():
            continue
        if prefix == "sent":
            text = str(value.get("S", ""))
            sent[int(index)] = "" if text == NOT_REPORTED else text
        elif prefix == "claim":
            claimed.add(int(index))
    dead_at = item.get("dead_lettered_at", {}).get("N")
    members = item.get("members", {}).get("L")
    return MessageHistory(
        status=_STATUSES_BY_VALUE.get(
            str(item.get("status", {}).get("S", "")), MessageStatus.ACTIVE
        ),
        attempts=int(item.get("attempts", {}).get("N", "0")),
        sent=sent,
        claimed=frozenset(claimed - set(sent)),
        outcome=item.get("outcome", {}).get("S"),
        dead_lettered_at=float(dead_at) if dead_at is not None else None,
        members=None if members is None else tuple(str(m.get("S", "")) for m in members),
        burst_head=item.get("burst_head", {}).get("S"),
    )


def _refusal(history: MessageHistory) -> BeginResult:
    if history.status is MessageStatus.DONE:
        return BeginResult.ALREADY_DONE
    if history.status is MessageStatus.DEAD_LETTERED:
        return BeginResult.ALREADY_DEAD_LETTERED
    return BeginResult.BUSY


def _reply_item(reply: SentReply) -> dict[str, AttributeValueTypeDef]:
    item: dict[str, AttributeValueTypeDef] = {
        KEY_ATTRIBUTE: {"S": REPLY_PREFIX + reply.reply_wamid},
        EXPIRY_ATTRIBUTE: _number(int(reply.sent_at) + REPLY_TTL_SECONDS),
        "inbound_wamid": {"S": reply.inbound_wamid},
        "slot": _number(reply.slot),
        "kind": {"S": reply.kind},
        "phone_number_id": {"S": reply.phone_number_id},
        "recipient": {"M": {key: {"S": value} for key, value in reply.recipient.items()}},
        # As JSON text: DynamoDB's number type would reject the floats a message may hold.
        "message": {"S": json.dumps(reply.message, ensure_ascii=False, separators=(",", ":"))},
        "decision": {"S": reply.decision},
        "sent_at": _number(reply.sent_at),
    }
    if reply.inbound_at is not None:
        item["inbound_at"] = _number(reply.inbound_at)
    if reply.original is not None:
        item["original"] = {"S": reply.original}
        item["generation"] = _number(reply.generation)
    if reply.in_reply_to:
        item["in_reply_to"] = {"S": reply.in_reply_to}
    if reply.burst:
        item["burst"] = {"L": [{"S": wamid} for wamid in reply.burst]}
    if reply.conversation_id:
        item["conversation_id"] = {"S": reply.conversation_id}
    return item


def _key(value: str) -> dict[str, AttributeValueTypeDef]:
    return {KEY_ATTRIBUTE: {"S": value}}


def _number(value: float) -> AttributeValueTypeDef:
    return {"N": repr(round(value, 3)) if isinstance(value, float) else str(value)}


def _error_code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))
