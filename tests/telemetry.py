"""Reading what the functions emitted: EMF metric documents and Powertools JSON log lines."""

from __future__ import annotations

import io
import json
from typing import Any


def emitted_metrics(output: str) -> list[dict[str, Any]]:
    """The EMF documents a run printed, each as {name, value, unit, dimensions}."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        directive = document["_aws"]["CloudWatchMetrics"][0]
        dimensions = {name: document[name] for name in directive["Dimensions"][0]}
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            found.append(
                {
                    "name": metric["Name"],
                    "value": sum(value) if isinstance(value, list) else value,
                    "unit": metric.get("Unit"),
                    "dimensions": dimensions,
                }
            )
    return found


def metric_total(metrics: list[dict[str, Any]], name: str, **dimensions: str) -> float:
    return sum(
        float(m["value"])
        for m in metrics
        if m["name"] == name and all(m["dimensions"].get(k) == v for k, v in dimensions.items())
    )


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
