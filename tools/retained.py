"""List what deleting the stack leaves behind (DeletionPolicy Retain), and how to remove it later.

    python -m tools.retained [--stack-name NAME] [--region REGION]

`make destroy` runs this first: once the stack is gone its outputs are too, and the retained
queues, table and secret are then only found by name. The policies are read from the template
the stack was deployed with, so a stack deployed with `-c dataRemovalPolicy=destroy` says that
nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from infra.constants import STACK_NAME

RETAINING_POLICIES = frozenset({"Retain", "RetainExceptOnCreate"})
# How to delete each kind of retained resource by hand, given its physical id.
CLEANUP = {
    "AWS::SQS::Queue": "aws sqs delete-queue --queue-url {id}",
    "AWS::DynamoDB::Table": "aws dynamodb delete-table --table-name {id}",
    "AWS::SecretsManager::Secret": "aws secretsmanager delete-secret --secret-id {id}",
}


@dataclass(frozen=True, slots=True)
class RetainedResource:
    logical_id: str
    type: str
    physical_id: str

    @property
    def cleanup(self) -> str | None:
        command = CLEANUP.get(self.type)
        return command.format(id=self.physical_id) if command else None


def retained_resources(cloudformation: Any, stack_name: str) -> list[RetainedResource]:
    """The stack's resources whose deployed DeletionPolicy keeps them after a deletion."""
    body = cloudformation.get_template(StackName=stack_name, TemplateStage="Original")[
        "TemplateBody"
    ]
    template = json.loads(body) if isinstance(body, str) else body
    retained = {
        logical_id
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("DeletionPolicy") in RETAINING_POLICIES
    }
    resources = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    return sorted(
        (
            RetainedResource(
                logical_id=r["LogicalResourceId"],
                type=r["ResourceType"],
                physical_id=r.get("PhysicalResourceId", "?"),
            )
            for r in resources
            if r["LogicalResourceId"] in retained
        ),
        key=lambda r: (r.type, r.logical_id),
    )


def render(stack_name: str, resources: Sequence[RetainedResource], out: TextIO) -> None:
    if not resources:
        out.write(f"Deleting {stack_name} deletes all its resources: none is retained.\n")
        return
    out.write(
        f"Deleting {stack_name} keeps these {len(resources)} resources (DeletionPolicy Retain). "
        "A new stack does not reuse them; idle, they cost cents a month (a secret $0.40):\n"
    )
    for resource in resources:
        out.write(f"- {resource.type} {resource.physical_id}\n")
        if resource.cleanup:
            out.write(f"    remove later with: {resource.cleanup}\n")


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parser = argparse.ArgumentParser(
        prog="python -m tools.retained", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack-name", default=STACK_NAME)
    parser.add_argument("--region", help="AWS region (default: your AWS configuration)")
    args = parser.parse_args(argv)
    cloudformation = boto3.session.Session(region_name=args.region).client("cloudformation")
    try:
        resources = retained_resources(cloudformation, args.stack_name)
    except (ClientError, BotoCoreError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    render(args.stack_name, resources, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
