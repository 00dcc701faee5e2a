#!/usr/bin/env python3
"""CDK app of whatsapp-relay: `make synth` / `make deploy` run this through the pinned CDK CLI.

Synthesizes offline: no account or region lookups, no credentials. Deployment-specific settings
are CDK context (`make deploy CDK_ARGS="-c alarmEmail=ops@example.com"`, or `context` in
cdk.json); the keys are those of CONTEXT_KEYS below.
"""

from __future__ import annotations

from aws_cdk import App
from aws_cdk import aws_lambda as lambda_

from infra.constants import STACK_NAME
from infra.nag import run_aws_solutions_checks
from infra.stack import RelayProps, WhatsAppRelayStack

# context key -> RelayProps field
CONTEXT_KEYS = {
    "alarmEmail": "alarm_email",
    "webAclArn": "web_acl_arn",
    "graphApiVersion": "graph_api_version",
    "logLevel": "log_level",
    "maxReceiveCount": "max_receive_count",
    "maxAttempts": "max_attempts",
    "consumerMaxConcurrency": "consumer_max_concurrency",
    "apiRateLimitPerSecond": "api_rate_limit_per_second",
    "apiBurstLimit": "api_burst_limit",
    "logRetentionDays": "log_retention_days",
    "oldestMessageAlarmSeconds": "oldest_message_alarm_seconds",
    "badSignatureAlarmCount": "bad_signature_alarm_count",
}


def props_from_context(app: App, code: lambda_.Code) -> RelayProps:
    """RelayProps with every context value given (`-c key=value` arrives as a string)."""
    defaults = RelayProps(code=code)
    values: dict[str, object] = {}
    for key, field in CONTEXT_KEYS.items():
        raw = app.node.try_get_context(key)
        if raw is None or raw == "":
            continue
        default = getattr(defaults, field)
        values[field] = int(raw) if isinstance(default, int) else str(raw)
    return RelayProps(code=code, **values)  # type: ignore[arg-type]


def main() -> None:
    from infra.bundling import bundled_code

    app = App()
    WhatsAppRelayStack(
        app,
        STACK_NAME,
        props=props_from_context(app, bundled_code()),
        description="whatsapp-relay: WhatsApp Cloud API webhook -> SQS FIFO -> replies",
    )
    run_aws_solutions_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
