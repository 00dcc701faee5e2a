"""AWS calls seen at the botocore level: recorded (service, operation, parameters) in one run of a
handler, counted in another, and replayed by a botocore-only script as the floor of a cold start.

Every boto3/botocore client is built by a botocore `Session`, and every session registers
`botocore.handlers.BUILTIN_HANDLERS` when it is created: a handler appended there sees every
call of every client made afterwards, whoever creates it (the handler's adapters, Powertools'
idempotency layer) and without touching the code under test.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AwsCall:
    service: str  # botocore's service name, e.g. "dynamodb"
    operation: str  # e.g. "PutItem"
    params: dict[str, Any]


def record_calls(into: list[AwsCall]) -> None:
    """From now on, append every API call of every new client to `into` (with its parameters
    as the client received them)."""
    import botocore.handlers

    def record(params: Mapping[str, Any], model: Any, **_: Any) -> None:
        into.append(
            AwsCall(model.service_model.service_name, model.name, copy.deepcopy(dict(params)))
        )

    botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", record))


def count_calls(into: Counter[str]) -> None:
    """From now on, count every API call of every new client as `service.Operation`."""
    import botocore.handlers

    def count(model: Any, **_: Any) -> None:
        into[f"{model.service_model.service_name}.{model.name}"] += 1

    botocore.handlers.BUILTIN_HANDLERS.append(("before-call", count))


def substituted(value: Any, replacements: Mapping[str, str]) -> Any:
    """`value` with every string equal to a key of `replacements` replaced (resource names)."""
    if isinstance(value, str):
        return replacements.get(value, value)
    if isinstance(value, dict):
        return {key: substituted(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [substituted(item, replacements) for item in value]
    return value


def replay(calls: Sequence[AwsCall]) -> int:
    """The floor: plain botocore, one session, one client per service, the same calls in order.
    Imports botocore itself (the caller times it). Returns how many calls AWS refused."""
    import botocore.session
    from botocore import xform_name
    from botocore.exceptions import ClientError

    session = botocore.session.get_session()
    clients: dict[str, Any] = {}
    refused = 0
    for call in calls:
        client = clients.get(call.service)
        if client is None:
            client = clients[call.service] = session.create_client(call.service)
        try:
            getattr(client, xform_name(call.operation))(**call.params)
        except ClientError:
            refused += 1
    return refused
