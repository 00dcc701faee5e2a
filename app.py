#!/usr/bin/env python3
"""CDK app of whatsapp-relay: `make synth` / `make deploy` run this through the pinned CDK CLI.

Synthesizes offline: no account or region lookups, no credentials. Deployment-specific settings
are CDK context (`cdk deploy -c alarmEmail=ops@example.com`, or `context` in cdk.json):
alarmEmail, webAclArn, graphApiVersion, maxReceiveCount, consumerMaxConcurrency,
apiRateLimitPerSecond, apiBurstLimit, logLevel, logRetentionDays.
"""

from __future__ import annotations

from aws_cdk import App

from infra.bundling import bundled_code
from infra.constants import STACK_NAME
from infra.nag import run_aws_solutions_checks
from infra.stack import RelayProps, WhatsAppRelayStack


def _int(app: App, key: str, default: int) -> int:
    value = app.node.try_get_context(key)
    return default if value is None else int(value)


def _text(app: App, key: str) -> str | None:
    value = app.node.try_get_context(key)
    return str(value) if value else None


def main() -> None:
    app = App()
    defaults = RelayProps(code=bundled_code())
    props = RelayProps(
        code=defaults.code,
        alarm_email=_text(app, "alarmEmail"),
        web_acl_arn=_text(app, "webAclArn"),
        graph_api_version=_text(app, "graphApiVersion") or defaults.graph_api_version,
        log_level=_text(app, "logLevel") or defaults.log_level,
        max_receive_count=_int(app, "maxReceiveCount", defaults.max_receive_count),
        consumer_max_concurrency=_int(
            app, "consumerMaxConcurrency", defaults.consumer_max_concurrency
        ),
        api_rate_limit_per_second=_int(
            app, "apiRateLimitPerSecond", defaults.api_rate_limit_per_second
        ),
        api_burst_limit=_int(app, "apiBurstLimit", defaults.api_burst_limit),
        log_retention_days=_int(app, "logRetentionDays", defaults.log_retention_days),
    )
    WhatsAppRelayStack(
        app,
        STACK_NAME,
        props=props,
        description="whatsapp-relay: WhatsApp Cloud API webhook -> SQS FIFO -> replies",
    )
    run_aws_solutions_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
