"""From recorded AWS calls to what IAM must allow, and from the synthesized template to what the
functions' roles do allow.

`permissions_for(call)` maps one API call to the IAM action(s) AWS authorizes it with, each on
the resource ARN its parameters name. Most operations are authorized by the action of the same
name; the exceptions this code meets are AWS's own rules, cited where they are encoded. A call
nothing here knows how to map raises `NoRule` (a new service or a parameter not understood yet
fails the test that met it; it is never guessed).

`FunctionRoles` reads, per function of the template, the statements its role holds (the
AWS::IAM::Policy documents attached to it and its inline policies; a managed policy is refused:
it cannot be read from the template) and what Lambda itself does with that role: write the
function's logs, send X-Ray segments when tracing is active, and poll the SQS queue of each of
its event source mappings. `decide` evaluates a need the way IAM does for a same-account caller:
the role's identity policy must allow it and the resource's own policy (an SQS queue policy here)
must not deny it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from tests.iam.emulated_stack import PARTITION, EmulatedStack
from tests.iam.recorder import ENV_SERVICE_NAME, AwsCall
from tests.infra.policy_evaluation import Decision, Request, Unsupported, evaluate, glob_matches


class NoRule(LookupError):
    """A call whose IAM action or resource this module does not know: add a rule, with its
    source in AWS's documentation."""


@dataclass(frozen=True, order=True)
class Permission:
    action: str
    resource: str


@dataclass(frozen=True)
class Need:
    """A permission a function's role must grant, and who needs it."""

    function: str  # logical id of the function
    permission: Permission
    because: str  # "functions/adapters/ledger.py: dynamodb TransactWriteItems", "Lambda: ..."


@dataclass(frozen=True)
class ArnNames:
    """Turns the identifiers calls pass (queue URLs, table and stack names) into ARNs."""

    region: str
    account: str
    partition: str = PARTITION

    def arn(self, service: str, resource: str, *, region: str | None = None) -> str:
        where = self.region if region is None else region
        return f"arn:{self.partition}:{service}:{where}:{self.account}:{resource}"

    def queue(self, url: str) -> str:
        # https://sqs.<region>.amazonaws.com/<account>/<name> (moto: http://host:port/<account>/<name>)
        account, name = urlparse(url).path.strip("/").split("/")
        return f"arn:{self.partition}:sqs:{self.region}:{account}:{name}"

    def table(self, name: str) -> str:
        return name if name.startswith("arn:") else self.arn("dynamodb", f"table/{name}")

    def secret(self, secret_id: str) -> str:
        if not secret_id.startswith("arn:"):
            # IAM judges a secret by its full ARN, whose random suffix a name does not give.
            raise NoRule(f"secret named {secret_id!r} rather than by its ARN")
        return secret_id

    def event_bus(self, name: str | None) -> str:
        if name and name.startswith("arn:"):
            return name
        return self.arn("events", f"event-bus/{name or 'default'}")

    def stack(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return self.arn("cloudformation", f"stack/{name}/00000000-0000-0000-0000-000000000000")

    def log_group(self, name: str) -> str:
        return self.arn("logs", f"log-group:{name}")


# --- what a call needs ------------------------------------------------------------------------

# The IAM prefix of each service this code calls (botocore's service name -> IAM's).
IAM_PREFIX = {
    "sqs": "sqs",
    "dynamodb": "dynamodb",
    "secretsmanager": "secretsmanager",
    "events": "events",
    "logs": "logs",
    "cloudformation": "cloudformation",
}
# "You cannot set permissions explicitly for SendMessageBatch, DeleteMessageBatch, or
# ChangeMessageVisibilityBatch. Instead, setting permissions for SendMessage, DeleteMessage, or
# ChangeMessageVisibility sets permissions for the corresponding batch versions" (Amazon SQS
# Developer Guide, "Amazon SQS batch actions").
SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# "Permissions for Put, Update, Delete, and Get actions are governed by the permissions used for
# the underlying PutItem, UpdateItem, DeleteItem, and GetItem operations. For the ConditionCheck
# action, you can use the dynamodb:ConditionCheckItem permission" (Amazon DynamoDB Developer
# Guide, "Using IAM with DynamoDB transactions"). The transaction itself needs no action of its
# own: each item is authorized on its own table.
TRANSACTION_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
# StartMessageMoveTask needs sqs:StartMessageMoveTask, sqs:ReceiveMessage, sqs:DeleteMessage and
# sqs:GetQueueAttributes on the source (the DLQ) and sqs:SendMessage on the destination (Amazon
# SQS Developer Guide, "Amazon SQS API permissions: Actions and resource reference").
MESSAGE_MOVE_SOURCE_ACTIONS = (
    "sqs:StartMessageMoveTask",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
)
# Actions that IAM authorizes on no particular resource: a policy must grant them on "*". Logs
# Insights' GetQueryResults names a query id, not a log group (the Service Authorization
# Reference lists no resource type for it).
RESOURCELESS_ACTIONS = frozenset({"logs:GetQueryResults"})


def permissions_for(call: AwsCall, names: ArnNames) -> list[Permission]:
    """The IAM action(s) AWS authorizes `call` with, each on the ARN of what it acts on."""
    rule = _RULES.get(call.service)
    if rule is None:
        raise NoRule(f"no IAM rule for service {call.service} ({call.operation})")
    found = rule(call, names, f"{IAM_PREFIX[call.service]}:{call.operation}")
    if not found:
        raise NoRule(f"no IAM rule for {call.service} {call.operation} with {dict(call.resources)}")
    return found


def _sqs(call: AwsCall, names: ArnNames, action: str) -> list[Permission]:
    resources = call.resources
    action = SQS_BATCH_ACTIONS.get(call.operation, action)
    if call.operation == "StartMessageMoveTask":
        if "DestinationArn" not in resources:
            # Back to each message's own source queue, whichever that is.
            raise NoRule("StartMessageMoveTask without DestinationArn")
        source = resources["SourceArn"]
        return [
            *(Permission(a, source) for a in MESSAGE_MOVE_SOURCE_ACTIONS),
            Permission("sqs:SendMessage", resources["DestinationArn"]),
        ]
    if "SourceArn" in resources:  # ListMessageMoveTasks, CancelMessageMoveTask
        return [Permission(action, resources["SourceArn"])]
    if "QueueUrl" in resources:
        return [Permission(action, names.queue(resources["QueueUrl"]))]
    if call.operation == "GetQueueUrl":
        owner = resources.get("QueueOwnerAWSAccountId", names.account)
        arn = f"arn:{names.partition}:sqs:{names.region}:{owner}:{resources['QueueName']}"
        return [Permission(action, arn)]
    return []


def _dynamodb(call: AwsCall, names: ArnNames, action: str) -> list[Permission]:
    if call.operation == "TransactWriteItems":
        return [
            Permission(TRANSACTION_ITEM_ACTIONS[item["kind"]], names.table(item["TableName"]))
            for item in call.resources["TransactItems"]
        ]
    if "TableName" in call.resources:
        return [Permission(action, names.table(call.resources["TableName"]))]
    return []


def _secretsmanager(call: AwsCall, names: ArnNames, action: str) -> list[Permission]:
    if "SecretId" in call.resources:
        return [Permission(action, names.secret(call.resources["SecretId"]))]
    return []


def _events(call: AwsCall, names: ArnNames, action: str) -> list[Permission]:
    if call.operation == "PutEvents":
        buses = {names.event_bus(entry["EventBusName"]) for entry in call.resources["Entries"]}
        return [Permission(action, bus) for bus in sorted(buses)]
    return []


def _cloudformation(call: AwsCall, names: ArnNames, action: str) -> list[Permission]:
    if "StackName" in call.resources:
        return [Permission(action, names.stack(call.resources["StackName"]))]
    return []


def _logs(call: AwsCall, names: ArnNames, action: str) -> list[Permission]:
    if action in RESOURCELESS_ACTIONS:
        return [Permission(action, "*")]
    # StartQuery over several groups is authorized on each of them.
    groups = call.resources.get("logGroupNames") or [call.resources.get("logGroupName")]
    return [Permission(action, names.log_group(group)) for group in groups if group]


_RULES: dict[str, Callable[[AwsCall, ArnNames, str], list[Permission]]] = {
    "sqs": _sqs,
    "dynamodb": _dynamodb,
    "secretsmanager": _secretsmanager,
    "events": _events,
    "cloudformation": _cloudformation,
    "logs": _logs,
}


# --- what the roles allow ---------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One statement of a role's policies, resolved, and where it is in the template."""

    policy: str  # logical id of the AWS::IAM::Policy (or "<Role>.Policies")
    index: int
    statement: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.policy}[{self.index}]"


@dataclass(frozen=True)
class FunctionRole:
    function: str  # logical id of the AWS::Lambda::Function
    service_name: str  # its POWERTOOLS_SERVICE_NAME: who recorded calls are attributed to
    role: str  # logical id of its AWS::IAM::Role
    role_arn: str
    grants: tuple[Grant, ...]

    def without(self, grant: Grant) -> FunctionRole:
        kept = tuple(g for g in self.grants if g != grant)
        return FunctionRole(self.function, self.service_name, self.role, self.role_arn, kept)


@dataclass
class FunctionRoles:
    """The stack's functions, their roles' grants, and the resource policies calls meet."""

    stack: EmulatedStack
    roles: dict[str, FunctionRole] = field(default_factory=dict)  # by function logical id
    resource_policies: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # by ARN

    @classmethod
    def of(cls, stack: EmulatedStack) -> FunctionRoles:
        model = cls(stack)
        for function_id, function in stack.of_type("AWS::Lambda::Function").items():
            properties = function["Properties"]
            role_ref = properties["Role"]
            if set(role_ref) != {"Fn::GetAtt"}:
                raise Unsupported(f"{function_id}: a role not created by this stack")
            role_id = role_ref["Fn::GetAtt"][0]
            model.roles[function_id] = FunctionRole(
                function=function_id,
                service_name=properties["Environment"]["Variables"][ENV_SERVICE_NAME],
                role=role_id,
                role_arn=f"arn:{PARTITION}:iam::{stack.account}:role/{role_id}",
                grants=tuple(model._grants(role_id)),
            )
        for policy in stack.of_type("AWS::SQS::QueuePolicy").values():
            document = stack.resolve(policy["Properties"]["PolicyDocument"])
            for queue in policy["Properties"]["Queues"]:
                model.resource_policies[stack.attributes[f"{queue['Ref']}.Arn"]] = document
        return model

    def _grants(self, role_id: str) -> Iterable[Grant]:
        role = self.stack.resources[role_id]["Properties"]
        if role.get("ManagedPolicyArns"):
            raise Unsupported(f"{role_id}: managed policies cannot be read from the template")
        for policy in role.get("Policies", []):
            for index, statement in enumerate(policy["PolicyDocument"]["Statement"]):
                yield Grant(f"{role_id}.Policies", index, self.stack.resolve(statement))
        for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for policy_id, policy in self.stack.of_type(type_).items():
                if {"Ref": role_id} not in policy["Properties"].get("Roles", []):
                    continue
                statements = policy["Properties"]["PolicyDocument"]["Statement"]
                for index, statement in enumerate(statements):
                    yield Grant(policy_id, index, self.stack.resolve(statement))

    def by_service_name(self, service_name: str | None) -> FunctionRole:
        found = [r for r in self.roles.values() if r.service_name == service_name]
        if len(found) != 1:
            raise LookupError(f"no single function of the stack runs as {service_name!r}")
        return found[0]

    def platform_needs(self, function_id: str) -> list[Need]:
        """What Lambda does with the function's role, beyond the function's own calls."""
        properties = self.stack.resources[function_id]["Properties"]
        needs: list[Need] = []
        log_group = properties.get("LoggingConfig", {}).get("LogGroup")
        if log_group is None:
            raise Unsupported(f"{function_id}: no log group of its own")
        # Lambda writes the function's output to a log stream of its log group (the two actions
        # of AWSLambdaBasicExecutionRole; the group exists, so no logs:CreateLogGroup).
        group_arn = str(self.stack.attributes[f"{log_group['Ref']}.Arn"]).removesuffix(":*")
        stream = f"{group_arn}:log-stream:2026/11/30/[$LATEST]0123456789abcdef"
        needs += [
            Need(function_id, Permission(action, stream), "Lambda: the function's logs")
            for action in ("logs:CreateLogStream", "logs:PutLogEvents")
        ]
        if properties.get("TracingConfig", {}).get("Mode") == "Active":
            # Active tracing: Lambda sends segments with the function's role; X-Ray's two write
            # actions take no resource but "*" (AWS X-Ray Developer Guide, "AWS Lambda and AWS
            # X-Ray": the AWSXRayDaemonWriteAccess actions).
            needs += [
                Need(function_id, Permission(action, "*"), "Lambda: active tracing")
                for action in ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
            ]
        for mapping in self.stack.of_type("AWS::Lambda::EventSourceMapping").values():
            if mapping["Properties"]["FunctionName"] != {"Ref": function_id}:
                continue
            source = str(self.stack.resolve(mapping["Properties"]["EventSourceArn"]))
            if source.split(":")[2] != "sqs":
                raise Unsupported(f"{function_id}: an event source other than SQS: {source}")
            # Lambda polls the queue with the function's role: "Lambda needs the following
            # permissions ... sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes"
            # (AWS Lambda Developer Guide, "Creating and configuring an Amazon SQS event source
            # mapping", execution role permissions).
            needs += [
                Need(function_id, Permission(action, source), "Lambda: SQS event source mapping")
                for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
            ]
        return needs

    def decide(self, role: FunctionRole, permission: Permission) -> Decision:
        """IAM's answer for the role asking for `permission` in this account, over TLS."""
        identity = evaluate(
            {"Statement": [grant.statement for grant in role.grants]},
            Request(principal={}, action=permission.action, resource=permission.resource),
            identity_based=True,
        )
        if identity is not Decision.ALLOW:
            return identity
        resource_policy = self.resource_policies.get(permission.resource)
        if resource_policy is not None:
            request = Request(
                principal={"AWS": role.role_arn},
                action=permission.action,
                resource=permission.resource,
                context={"aws:SecureTransport": "true", "aws:PrincipalAccount": self.stack.account},
            )
            if evaluate(resource_policy, request) is Decision.EXPLICIT_DENY:
                return Decision.EXPLICIT_DENY
        return Decision.ALLOW


def needs_of(calls: Iterable[AwsCall], roles: FunctionRoles) -> list[Need]:
    """The recorded calls as needs of the function that made each (by its service name), plus
    what Lambda does with each function's role."""
    names = ArnNames(region=roles.stack.region, account=roles.stack.account)
    needs: set[Need] = set()
    for call in calls:
        role = roles.by_service_name(call.function)
        because = f"{call.origin}: {call.service} {call.operation}"
        needs.update(Need(role.function, p, because) for p in permissions_for(call, names))
    for function_id in roles.roles:
        needs.update(roles.platform_needs(function_id))
    return sorted(needs, key=lambda n: (n.function, n.permission, n.because))


def refused(needs: Sequence[Need], roles: FunctionRoles) -> list[tuple[Need, Decision]]:
    """Every need the function's role does not get."""
    answers = ((need, roles.decide(roles.roles[need.function], need.permission)) for need in needs)
    return [(need, decision) for need, decision in answers if decision is not Decision.ALLOW]


@dataclass(frozen=True, order=True)
class UnusedGrant:
    function: str
    grant: str  # the statement's label
    action: str
    resource: str


def unused_grants(needs: Sequence[Need], roles: FunctionRoles) -> list[UnusedGrant]:
    """Each (action, resource) an Allow statement of a role names that no need of its function
    matches: a permission nothing uses."""
    unused = []
    for role in roles.roles.values():
        own = [n.permission for n in needs if n.function == role.function]
        for grant in role.grants:
            if grant.statement["Effect"] != "Allow":
                continue
            for action in _as_list(grant.statement["Action"]):
                for resource in _as_list(grant.statement["Resource"]):
                    if not any(
                        glob_matches(action, p.action, ignore_case=True)
                        and glob_matches(resource, p.resource)
                        for p in own
                    ):
                        unused.append(UnusedGrant(role.function, grant.label, action, resource))
    return sorted(unused)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
