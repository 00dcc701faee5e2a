"""The one Logger, Metrics and Tracer of a function's execution environment.

Both functions import these; each reports under its own `POWERTOOLS_SERVICE_NAME`. Constructing
them reads only environment variables: no AWS call happens at import.
"""

import os
from collections.abc import Mapping

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from functions.common.names import DEFAULT_METRICS_NAMESPACE, ENV_METRICS_NAMESPACE

logger = Logger()
# Powertools raises on flush without a namespace; a missing variable must not cost a webhook.
metrics = Metrics(namespace=os.environ.get(ENV_METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE)
tracer = Tracer()


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
