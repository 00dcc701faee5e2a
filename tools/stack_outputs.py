"""The deployed stack's CloudFormation outputs: how the operator tools find what they work on.

The output keys are those of infra/constants.py (`OUTPUT_*`); every tool that takes
`--stack-name` reads them here.
"""

from __future__ import annotations

from typing import Any


class MissingOutput(LookupError):
    """The stack has no such output (an older stack, or another stack by that name)."""


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """OutputKey -> OutputValue of the stack (a missing stack raises botocore's ClientError)."""
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def required_output(cloudformation: Any, stack_name: str, key: str) -> str:
    outputs = stack_outputs(cloudformation, stack_name)
    if key not in outputs:
        raise MissingOutput(f"stack {stack_name} has no {key} output")
    return outputs[key]
