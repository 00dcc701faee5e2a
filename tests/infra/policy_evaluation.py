"""A small evaluator of IAM policies, as AWS evaluates one for a single request: resource policies
(a statement names its Principal) and identity policies (a role's statements: no Principal, the
caller is the role; `identity_based=True`).

Enough of IAM's logic to judge the synthesized policies of this stack, and strict about the rest:
an explicit Deny wins, else an Allow is needed, else the request is implicitly denied. A
statement applies when its principal, action, resource and every condition match. Conditions
support the operators this stack writes (StringEquals, StringLike, ArnEquals, ArnLike, Bool, each
also ...IfExists); within one operator every key must match, and a key with a list of values
matches any of them. Anything else (NotPrincipal, NotAction, NotResource, other operators, set
operators) raises, so a policy this evaluator does not understand fails the test instead of
being misjudged.

CloudFormation expressions in the template (Ref, Fn::Join, Fn::GetAtt) are resolved first with
test values for the pseudo parameters and the stack's resources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Decision(Enum):
    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"


class Unsupported(NotImplementedError):
    """A policy element this evaluator does not model."""


@dataclass(frozen=True)
class Request:
    """One API request as the resource policy sees it."""

    # {"Service": "cloudwatch.amazonaws.com"} or {"AWS": "<arn>"}; identity policies ignore it
    principal: Mapping[str, str]
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)  # condition keys -> value


def resolve(
    value: Any, refs: Mapping[str, str], attributes: Mapping[str, str] | None = None
) -> Any:
    """The template value with Ref / Fn::Join / Fn::GetAtt replaced by the test values given
    (`refs` by logical id or pseudo parameter, `attributes` by "LogicalId.Attribute")."""
    if isinstance(value, list):
        return [resolve(item, refs, attributes) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        if name not in refs:
            raise KeyError(f"no test value for Ref {name}")
        return refs[name]
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return str(separator).join(str(resolve(part, refs, attributes)) for part in parts)
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        key = f"{logical_id}.{attribute}"
        if attributes is None or key not in attributes:
            raise KeyError(f"no test value for Fn::GetAtt {key}")
        return attributes[key]
    if any(k.startswith("Fn::") for k in value):
        raise Unsupported(f"intrinsic function {sorted(value)}")
    return {k: resolve(v, refs, attributes) for k, v in value.items()}


def evaluate(
    policy: Mapping[str, Any], request: Request, *, identity_based: bool = False
) -> Decision:
    allowed = False
    for statement in _as_list(policy["Statement"]):
        for element in ("NotPrincipal", "NotAction", "NotResource"):
            if element in statement:
                raise Unsupported(element)
        if identity_based and "Principal" in statement:
            raise Unsupported("a Principal in an identity policy statement")
        if not _applies(statement, request, identity_based=identity_based):
            continue
        if statement["Effect"] == "Deny":
            return Decision.EXPLICIT_DENY
        if statement["Effect"] == "Allow":
            allowed = True
        else:
            raise Unsupported(f"Effect {statement['Effect']!r}")
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def _applies(statement: Mapping[str, Any], request: Request, *, identity_based: bool) -> bool:
    return (
        (identity_based or _principal_matches(statement.get("Principal"), request.principal))
        and any(_glob(p, request.action, ignore_case=True) for p in _as_list(statement["Action"]))
        and any(_glob(p, request.resource) for p in _as_list(statement["Resource"]))
        and _conditions_match(statement.get("Condition", {}), request.context)
    )


def _principal_matches(principal: Any, caller: Mapping[str, str]) -> bool:
    if principal is None:
        raise Unsupported("a resource policy statement without a Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        raise Unsupported(f"Principal {principal!r}")
    for kind, values in principal.items():
        if kind not in {"AWS", "Service"}:
            raise Unsupported(f"Principal type {kind}")
        for value in _as_list(values):
            if kind == "AWS" and value == "*":
                return True  # anyone, AWS services included
            if kind in caller and value == caller[kind]:
                return True
    return False


_OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Bool"}


def _conditions_match(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    by_lower_key = {k.lower(): v for k, v in context.items()}
    for operator, tests in conditions.items():
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS:
            raise Unsupported(f"condition operator {operator}")
        for key, expected in tests.items():
            actual = by_lower_key.get(key.lower())
            if actual is None:
                if operator.endswith("IfExists"):
                    continue
                return False
            if not any(_compare(base, str(e), actual) for e in _as_list(expected)):
                return False
    return True


def _compare(operator: str, expected: str, actual: str) -> bool:
    if operator == "StringEquals":
        return expected == actual
    if operator == "StringLike":
        return _glob(expected, actual)
    if operator == "Bool":
        return expected.lower() == actual.lower()
    # ArnEquals / ArnLike: the six colon-separated parts match one by one (wildcards allowed).
    expected_parts, actual_parts = expected.split(":", 5), actual.split(":", 5)
    if len(expected_parts) != 6 or len(actual_parts) != 6:
        return False
    return all(_glob(e, a) for e, a in zip(expected_parts, actual_parts, strict=True))


def glob_matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` one character."""
    return _glob(pattern, value, ignore_case=ignore_case)


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
