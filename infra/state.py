"""The consumer's idempotency table, and the credentials secret both functions read."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from functions.common.names import (
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import IDEMPOTENCY_PARTITION_KEY, IDEMPOTENCY_TTL_ATTRIBUTE
from infra.nag import acknowledge

# Placeholders the deploy guide replaces with one `put-secret-value`. They are not secrets: the
# verify token only echoes Meta's challenge, and a placeholder access token is refused by Meta.
PLACEHOLDER_VERIFY_TOKEN = "REPLACE_WITH_YOUR_VERIFY_TOKEN"  # noqa: S105
PLACEHOLDER_ACCESS_TOKEN = "REPLACE_WITH_YOUR_ACCESS_TOKEN"  # noqa: S105
APP_SECRET_LENGTH = 48


class IdempotencyTable(Construct):
    """On-demand table of answered wamids (Powertools idempotency records), TTL-expired."""

    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=IDEMPOTENCY_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            time_to_live_attribute=IDEMPOTENCY_TTL_ATTRIBUTE,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal_policy,
        )


class CredentialsSecret(Construct):
    """The secret with the contract's JSON keys, created with placeholders.

    `appSecret` starts as a random string rather than a known placeholder: until the owner puts
    Meta's app secret in, nobody can sign a webhook this stack accepts.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description=(
                "WhatsApp Cloud API credentials of whatsapp-relay: JSON with appSecret, "
                "verifyToken, accessToken (fill with `aws secretsmanager put-secret-value`)"
            ),
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(
                    {
                        SECRET_KEY_VERIFY_TOKEN: PLACEHOLDER_VERIFY_TOKEN,
                        SECRET_KEY_ACCESS_TOKEN: PLACEHOLDER_ACCESS_TOKEN,
                    }
                ),
                generate_string_key=SECRET_KEY_APP_SECRET,
                exclude_punctuation=True,
                password_length=APP_SECRET_LENGTH,
            ),
            removal_policy=removal_policy,
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "The values are Meta's app secret, verify token and system-user access token: they "
            "are issued and rotated in Meta's Business Manager, which a rotation Lambda cannot "
            "do. docs/runbook.md describes rotating them by hand with put-secret-value.",
        )
