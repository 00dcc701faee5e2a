"""Runs every benchmark in turn: `python -m benchmarks` (what `make bench` calls)."""

import importlib
import sys

BENCHMARKS = (
    "benchmarks.ingest_latency",
    "benchmarks.peer_pywa",
    "benchmarks.consumer_throughput",
    "benchmarks.status_cost",
)


def main() -> int:
    for name in BENCHMARKS:
        print(f"\n== {name}", flush=True)
        importlib.import_module(name).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
