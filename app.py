#!/usr/bin/env python3
"""CDK app of whatsapp-relay: `make synth` / `make deploy` run this through the pinned CDK CLI.

Synthesizes offline: no account or region lookups, no credentials. Deployment-specific settings
are CDK context (`make deploy CDK_ARGS="-c alarmEmail=ops@example.com"`, or `context` in
cdk.json); the keys are those of infra/context.py, listed in docs/deploy.md. A wrong key or value,
reply rules the consumer would refuse, or a reply handler that is not there, stop the app with
one line on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence

from aws_cdk import App
from aws_cdk import aws_lambda as lambda_

from infra.constants import DEFAULT_REPLY_RULES_FILE, STACK_NAME
from infra.context import ContextError, settings_from_context
from infra.nag import run_aws_solutions_checks
from infra.reply_handler_check import ReplyHandlerSpecError, locate_handler
from infra.reply_rules_check import ReplyRulesFileError
from infra.stack import RelayProps, WhatsAppRelayStack


def bundle(extra_files: Sequence[str]) -> lambda_.Code:
    from infra.bundling import bundled_code

    return bundled_code(extra_files=extra_files)


def relay_props(
    context: Mapping[str, object],
    code_for: Callable[[Sequence[str]], lambda_.Code] = bundle,
) -> RelayProps:
    """RelayProps from the app's context, with a code asset that carries the reply rules file
    and the reply handler's package."""
    settings = settings_from_context(context)
    extra_files = [str(settings.get("reply_rules_file", DEFAULT_REPLY_RULES_FILE))]
    handler = settings.get("reply_handler")
    if isinstance(handler, str):
        extra_files += locate_handler(handler).files
    return RelayProps(code=code_for(extra_files), **settings)  # type: ignore[arg-type]


def main() -> None:
    app = App()
    try:
        props = relay_props(app.node.get_all_context())
    except (ContextError, ReplyRulesFileError, ReplyHandlerSpecError) as error:
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
