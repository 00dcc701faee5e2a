"""The synthesized template's data resources created in moto, and every value the template refers
to resolved against them.

Not a CloudFormation deployment (moto's has gaps: /work/shared/reference/toolchain.md): only what
the functions touch - every `AWS::SQS::Queue`, `AWS::DynamoDB::Table` and
`AWS::SecretsManager::Secret` of the template, whatever their number, plus the EventBridge bus a
function is configured with (an existing bus, not a resource of the stack). Each gets a name
derived from its logical id; `Ref` and `Fn::GetAtt` then resolve to the real moto values. So the
role policies and the functions' environment variables of the template point at the very queues,
table and secret the handlers then call: a call's QueueUrl is the URL of the queue the template's
QUEUE_URL names, and the role statement's `Fn::GetAtt [Queue, Arn]` is that queue's ARN.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from functions.common.names import ENV_EVENT_BUS_NAME, ENV_REPLY_RULES_PATH
from infra.constants import LAMBDA_TASK_ROOT
from tests.conftest import TEST_REGION, boto_client
from tests.iam.recorder import REPO_ROOT
from tests.infra.policy_evaluation import resolve

PARTITION = "aws"


@dataclass
class EmulatedStack:
    template: Mapping[str, Any]
    account: str
    region: str = TEST_REGION
    refs: dict[str, str] = field(default_factory=dict)  # logical id or pseudo parameter -> Ref
    attributes: dict[str, str] = field(default_factory=dict)  # "LogicalId.Attribute" -> value

    @property
    def resources(self) -> Mapping[str, Any]:
        return dict(self.template["Resources"])

    def of_type(self, type_: str) -> dict[str, Any]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == type_}

    def resolve(self, value: Any) -> Any:
        return resolve(value, self.refs, self.attributes)

    def function_environment(self, function_id: str) -> dict[str, str]:
        """The function's environment as the template sets it, every reference resolved, and
        the files it names where this checkout has them (the asset keeps repository paths under
        the task root)."""
        variables = self.resources[function_id]["Properties"]["Environment"]["Variables"]
        environment = {name: str(self.resolve(value)) for name, value in variables.items()}
        rules = environment.get(ENV_REPLY_RULES_PATH)
        if rules is not None:
            relative = PurePosixPath(rules).relative_to(LAMBDA_TASK_ROOT)
            environment[ENV_REPLY_RULES_PATH] = str(REPO_ROOT / relative)
        return environment


def deploy(template: Mapping[str, Any], endpoint: str, *, secret_string: str) -> EmulatedStack:
    """Create the template's queues, tables and secrets (and the buses its functions name) in
    moto's server at `endpoint`, under fresh names."""
    suffix = uuid.uuid4().hex[:8]
    sqs = boto_client("sqs", endpoint)
    account = boto_client("sts", endpoint).get_caller_identity()["Account"]
    stack = EmulatedStack(template=template, account=account)
    stack.refs.update(
        {
            "AWS::AccountId": account,
            "AWS::Region": stack.region,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"relay-{suffix}",
        }
    )
    for logical_id, resource in stack.of_type("AWS::SQS::Queue").items():
        properties = resource.get("Properties", {})
        fifo = bool(properties.get("FifoQueue"))
        name = f"{logical_id}-{suffix}" + (".fifo" if fifo else "")
        attributes = {"FifoQueue": "true"} if fifo else {}
        if "VisibilityTimeout" in properties:
            attributes["VisibilityTimeout"] = str(properties["VisibilityTimeout"])
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        stack.refs[logical_id] = url
        stack.attributes.update(
            {
                f"{logical_id}.Arn": arn,
                f"{logical_id}.QueueUrl": url,
                f"{logical_id}.QueueName": name,
            }
        )
    for logical_id, resource in stack.of_type("AWS::SQS::Queue").items():
        redrive = resource.get("Properties", {}).get("RedrivePolicy")
        if redrive is not None:  # once every queue exists: it names the dead-letter queue's ARN
            sqs.set_queue_attributes(
                QueueUrl=stack.refs[logical_id],
                Attributes={"RedrivePolicy": json.dumps(stack.resolve(redrive))},
            )
    dynamodb = boto_client("dynamodb", endpoint)
    for logical_id, resource in stack.of_type("AWS::DynamoDB::Table").items():
        properties = resource["Properties"]
        name = f"{logical_id}-{suffix}"
        table = dynamodb.create_table(
            TableName=name,
            KeySchema=properties["KeySchema"],
            AttributeDefinitions=properties["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )["TableDescription"]
        stack.refs[logical_id] = name
        stack.attributes[f"{logical_id}.Arn"] = table["TableArn"]
    secrets = boto_client("secretsmanager", endpoint)
    for logical_id in stack.of_type("AWS::SecretsManager::Secret"):
        created = secrets.create_secret(Name=f"{logical_id}-{suffix}", SecretString=secret_string)
        stack.refs[logical_id] = created["ARN"]  # a secret's Ref is its ARN
    for logical_id in stack.of_type("AWS::Logs::LogGroup"):
        name = f"/aws/lambda/{logical_id}-{suffix}"  # not created: the code never calls Logs
        stack.refs[logical_id] = name
        stack.attributes[f"{logical_id}.Arn"] = (
            f"arn:{PARTITION}:logs:{stack.region}:{account}:log-group:{name}:*"
        )
    for logical_id in stack.of_type("AWS::Lambda::Function"):
        stack.refs[logical_id] = f"{logical_id}-{suffix}"
    events = boto_client("events", endpoint)
    for logical_id in stack.of_type("AWS::Lambda::Function"):
        bus = stack.resources[logical_id]["Properties"]["Environment"]["Variables"].get(
            ENV_EVENT_BUS_NAME
        )
        if isinstance(bus, str):  # an existing bus the stack is given: make it exist
            name = bus.rsplit("/", 1)[-1] if bus.startswith("arn:") else bus
            if name not in {b["Name"] for b in events.list_event_buses()["EventBuses"]}:
                events.create_event_bus(Name=name)
    return stack
