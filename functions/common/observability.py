"""The one Logger and Metrics of a function's execution environment.

Both functions import these; each reports under its own `POWERTOOLS_SERVICE_NAME`. Constructing
them reads only environment variables: no AWS call happens at import.

No Powertools Tracer: it loads the X-Ray SDK at import and patches every library it finds, which
cost more than `import boto3` itself on a cold start. Lambda's active tracing still records every
invocation (and API Gateway's the request), which is what the service map and the runbook use
("Tracing without the X-Ray SDK" in docs/decisions.md).
"""

import functools
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from functions.common.lambda_context import StandInContext
from functions.common.names import DEFAULT_METRICS_NAMESPACE, ENV_METRICS_NAMESPACE

# Libraries that log request and response bodies below WARNING: botocore logs GetSecretValue's
# SecretString and SendMessageBatch's message bodies at DEBUG, urllib3 request lines. Lambda puts
# the root logger at the function's application log level, so `LOG_LEVEL=DEBUG` would send them
# all to CloudWatch; capped here, at import, whatever the root level (docs/decisions.md D33).
LIBRARY_LOGGERS = ("boto3", "botocore", "s3transfer", "urllib3")
LIBRARY_LOG_LEVEL = logging.WARNING


def quiet_library_loggers() -> None:
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(LIBRARY_LOG_LEVEL)


quiet_library_loggers()

logger = Logger()
# Powertools raises on flush without a namespace; a missing variable must not cost a webhook.
metrics = Metrics(namespace=os.environ.get(ENV_METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE)

# A handshake or a refused request has nothing to count; Powertools warns on every such flush.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def count_by_dimension(metric_name: str, dimension: str, counts: Mapping[str, int]) -> None:
    """Emit one EMF count per dimension value (e.g. failures per `ErrorCode`).

    Powertools' `Metrics` shares one dimension set across a whole invocation, so a metric whose
    dimension varies per occurrence goes out as its own EMF blob through `single_metric`.
    """
    for value, count in counts.items():
        with single_metric(
            name=metric_name,
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions=metrics.default_dimensions,
        ) as metric:
            metric.add_dimension(name=dimension, value=value)


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_handler(*, correlation_id_path: str | None = None) -> Callable[[Handler], Handler]:
    """The Powertools decorators of an entry point, in their one fixed order: log context (with
    the correlation id), then the metrics flush.

    A caller that passes no Lambda context (a script, another test harness) gets a stand-in
    instead of an AttributeError deep inside Powertools. The event is never logged, whatever
    `POWERTOOLS_LOGGER_LOG_EVENT` says: it holds message text, phone numbers and the verify token.
    """

    def decorate(handler: Handler) -> Handler:
        instrumented = logger.inject_lambda_context(
            correlation_id_path=correlation_id_path, clear_state=True, log_event=False
        )(metrics.log_metrics(handler))

        @functools.wraps(handler)
        def entry_point(event: dict[str, Any], context: Any) -> dict[str, Any]:
            answer: dict[str, Any] = instrumented(event, context or StandInContext())
            return answer

        return entry_point

    return decorate
