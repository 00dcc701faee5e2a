#!/usr/bin/env python3
"""CDK app of whatsapp-relay: `make synth` / `make deploy` run this through the pinned CDK CLI.

Synthesizes offline: no account or region lookups, no credentials. Deployment-specific settings
are CDK context (`make deploy CDK_ARGS="-c alarmEmail=ops@example.com"`, or `context` in
cdk.json); the keys are those of infra/context.py, listed in docs/deploy.md. A wrong key or value,
or reply rules the consumer would refuse, stop the app with one line on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence

from aws_cdk import App
from aws_cdk import aws_lambda as lambda_

from infra.constants import DEFAULT_REPLY_RULES_FILE, STACK_NAME
from infra.context import ContextError, settings_from_context
from infra.nag import run_aws_solutions_checks
from infra.reply_rules_check import ReplyRulesFileError
from infra.stack import RelayProps, WhatsAppRelayStack


def bundle(extra_files: Sequence[str]) -> lambda_.Code:
    from infra.bundling import bundled_code

    return bundled_code(extra_files=extra_files)


def relay_props(
    context: Mapping[str, object],
    code_for: Callable[[Sequence[str]], lambda_.Code] = bundle,
) -> RelayProps:
    """RelayProps from the app's context, with a code asset that carries the reply rules file."""
    settings = settings_from_context(context)
    rules_file = str(settings.get("reply_rules_file", DEFAULT_REPLY_RULES_FILE))
    return RelayProps(code=code_for([rules_file]), **settings)  # type: ignore[arg-type]


def main() -> None:
    app = App()
    try:
        props = relay_props(app.node.get_all_context())
    except (ContextError, ReplyRulesFileError) as error:
        sys.stderr.write(f"error: {error}\n")
        raise SystemExit(1) from None
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
