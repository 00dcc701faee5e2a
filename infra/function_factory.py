"""The one place Lambda defaults live: arm64, the pinned Python runtime, JSON logs into a log group
with a set retention, active tracing, and a role of its own that starts with nothing but the
right to write to that log group (no AWS managed policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.common.names import ENV_LOG_LEVEL, ENV_METRICS_NAMESPACE, ENV_SERVICE_NAME
from infra.constants import LAMBDA_PYTHON_VERSION
from infra.nag import acknowledge

# The newest Python runtime Lambda offers (cdk-nag's AwsSolutions-L1 asks for it).
LATEST_LAMBDA_PYTHON_VERSION = "3.14"

_RUNTIMES = {"3.13": lambda_.Runtime.PYTHON_3_13, "3.14": lambda_.Runtime.PYTHON_3_14}
LOG_LEVELS = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionDefaults:
    """What every function of the stack shares."""

    code: lambda_.Code
    metrics_namespace: str
    log_level: str
    log_retention: logs.RetentionDays


@dataclass(frozen=True, slots=True)
class RelayFunction:
    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    defaults: FunctionDefaults,
    handler: str,
    service_name: str,
    description: str,
    memory_mb: int,
    timeout_seconds: int,
    environment: Mapping[str, str],
) -> RelayFunction:
    """A function of this project, with the Powertools variables every function needs."""
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=defaults.log_retention,
        removal_policy=RemovalPolicy.DESTROY,
    )
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"{description}: logs, traces and only the resources it uses",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    function = lambda_.Function(
        scope,
        construct_id,
        description=description,
        code=defaults.code,
        handler=handler,
        runtime=_RUNTIMES[LAMBDA_PYTHON_VERSION],
        architecture=lambda_.Architecture.ARM_64,
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_seconds),
        role=role,
        tracing=lambda_.Tracing.ACTIVE,
        logging_format=lambda_.LoggingFormat.JSON,
        application_log_level_v2=LOG_LEVELS[defaults.log_level],
        system_log_level_v2=lambda_.SystemLogLevel.WARN,
        log_group=log_group,
        environment={
            ENV_SERVICE_NAME: service_name,
            ENV_METRICS_NAMESPACE: defaults.metrics_namespace,
            ENV_LOG_LEVEL: defaults.log_level,
            **environment,
        },
    )
    if LAMBDA_PYTHON_VERSION != LATEST_LAMBDA_PYTHON_VERSION:
        # Why not the newest: "Python runtime: the version bytecode and tests can use" in
        # docs/decisions.md.
        acknowledge(
            function,
            "AwsSolutions-L1",
            f"Python {LAMBDA_PYTHON_VERSION}, not the newest runtime: the bundle's bytecode must "
            "be compiled by the runtime's own version, and the build machines have "
            f"{LAMBDA_PYTHON_VERSION}, not {LATEST_LAMBDA_PYTHON_VERSION}; the functions' tests "
            f"run on {LAMBDA_PYTHON_VERSION} too.",
        )
    # The log group's `Arn` attribute ends in `:*`, so the statement above covers its streams.
    # `tracing` adds X-Ray's two write actions, which take no resource but "*".
    return RelayFunction(function=function, role=role, log_group=log_group)
