"""cdk-nag wiring: the AwsSolutions pack runs at every synth through CDK's `Validations`, and every
finding that stays is acknowledged next to the resource it concerns, with the reason written out.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from constructs import IConstruct


def run_aws_solutions_checks(app: App) -> None:
    """Register the AwsSolutions pack; an unacknowledged finding makes synth exit non-zero."""
    from cdk_nag import AwsSolutionsChecks

    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one cdk-nag finding (`AwsSolutions-XXX` or `AwsSolutions-IAM5[...]`) with a reason."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
