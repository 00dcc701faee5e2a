"""`make bench`: measure every figure of the performance issue in one run, print the table and
write `bench/results.json`.

    python -m benchmarks [--quick] [--only imports,first-call,pywa,consumer,e2e] [--out DIR]

Every measured process writes its logs to `DIR/bench.log`, never to this terminal: the table is
the only output. `--quick` is a tiny run that checks the harness itself (its figures mean
little). A part that fails is reported in the table and no results file is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from benchmarks.lambda_env import REPO_ROOT, XRaySink
from benchmarks.runner import Runner

PARTS = ("imports", "first-call", "pywa", "consumer", "e2e")


@dataclass(frozen=True)
class Sizes:
    import_rounds: int
    first_call_rounds: int
    pywa_rounds: int
    consumer_batches: int
    e2e_webhooks: int
    e2e_senders: int
    e2e_concurrency: int
    e2e_settle_seconds: float


FULL = Sizes(15, 15, 2000, 7, 2000, 200, 8, 30.0)
QUICK = Sizes(2, 1, 30, 1, 24, 6, 3, 15.0)


@dataclass(frozen=True)
class Target:
    key: str
    target: str
    met: Callable[[float], bool] | None  # None: reported, no target
    unit: str = ""


TARGETS = (
    Target("import_ratio_ingest", "≤ 0.8", lambda v: v <= 0.8, "x"),
    Target("import_ratio_consumer", "≤ 0.8", lambda v: v <= 0.8, "x"),
    Target("first_call_ratio_ingest", "≤ 1.25", lambda v: v <= 1.25, "x"),
    Target("first_call_ratio_consumer", "≤ 1.25", lambda v: v <= 1.25, "x"),
    Target("peak_rss_mb_ingest", "reported", None, " MB"),
    Target("peak_rss_mb_consumer", "reported", None, " MB"),
    Target("ingest_usecase_vs_pywa", "≤ 0.8", lambda v: v <= 0.8, "x"),
    Target("ingest_handler_vs_pywa", "≤ 2.0", lambda v: v <= 2.0, "x"),
    Target("consumer_efficiency", "≥ 0.85", lambda v: v >= 0.85),
    Target("consumer_store_calls_per_message", "≤ 2", lambda v: v <= 2),
    Target("e2e_ack_p50_ms", "reported", None, " ms"),
    Target("e2e_ack_p99_ms", "≤ 250", lambda v: v <= 250, " ms"),
    Target("e2e_replies_per_s", "reported", None, "/s"),
    Target("e2e_lost", "0", lambda v: v == 0),
    Target("e2e_duplicates", "0", lambda v: v == 0),
)
KEYS_BY_PART = {
    "imports": ("import_ratio_ingest", "import_ratio_consumer"),
    "first-call": (
        "first_call_ratio_ingest",
        "first_call_ratio_consumer",
        "peak_rss_mb_ingest",
        "peak_rss_mb_consumer",
    ),
    "pywa": ("ingest_usecase_vs_pywa", "ingest_handler_vs_pywa"),
    "consumer": ("consumer_efficiency", "consumer_store_calls_per_message"),
    "e2e": ("e2e_ack_p50_ms", "e2e_ack_p99_ms", "e2e_replies_per_s", "e2e_lost", "e2e_duplicates"),
}


def measure_part(part: str, sizes: Sizes, runner: Runner, sink: XRaySink) -> dict[str, Any]:
    from benchmarks import cold_start, end_to_end, warm
    from benchmarks.aws import Aws
    from local_pipeline.fake_graph import FakeGraphApi

    log = runner.log
    if part == "imports":
        return cold_start.import_ratios(runner, sizes.import_rounds, sink.port)
    if part == "first-call":
        with Aws(log=log) as aws, FakeGraphApi(expected_token=cold_start.ACCESS_TOKEN) as graph:
            return cold_start.first_call_ratios(
                runner, sizes.first_call_rounds, sink.port, str(graph.url), aws
            )
    if part == "pywa":
        with Aws(log=log) as aws:
            return warm.ingest_vs_pywa(runner, sizes.pywa_rounds, sink.port, aws)
    if part == "consumer":
        graph = FakeGraphApi(
            latency_seconds=warm.GRAPH_LATENCY_SECONDS, expected_token=cold_start.ACCESS_TOKEN
        )
        with Aws(dynamodb_latency_ms=warm.STORE_LATENCY_MS, log=log) as aws, graph:
            return warm.consumer_batch(runner, sizes.consumer_batches, sink.port, aws, graph)
    return end_to_end.measure(
        log,
        webhooks=sizes.e2e_webhooks,
        senders=sizes.e2e_senders,
        concurrency=sizes.e2e_concurrency,
        settle_seconds=sizes.e2e_settle_seconds,
    )


# --- the table ---------------------------------------------------------------------------------


def _floor_text(key: str, results: dict[str, Any]) -> str:
    detail = results.get("details", {}).get(key, {})
    if key.startswith("peak_rss_mb_") and f"{key}_floor" in results:
        return f"botocore-only: {results[f'{key}_floor']} MB"
    for unit, suffix in (("ms", " ms"), ("us", " µs")):
        if f"floor_median_{unit}" in detail:
            return f"{detail['floor']}: {detail[f'floor_median_{unit}']}{suffix}"
    if "floor_ms" in detail:
        return f"{detail['floor']}: {detail['floor_ms']:g} ms"
    return "—"


def _figure_text(target: Target, value: float, results: dict[str, Any]) -> str:
    detail = results.get("details", {}).get(target.key, {})
    text = f"{value:g}{target.unit}"
    for unit, suffix in (("ms", " ms"), ("us", " µs")):
        if f"median_{unit}" in detail:
            return f"{text} ({detail[f'median_{unit}']}{suffix})"
    if "median_batch_ms" in detail:
        return f"{text} ({detail['median_batch_ms']} ms)"
    return text


def table(results: dict[str, Any], failures: dict[str, str]) -> list[str]:
    lines = ["| key | figure | floor | target | met |", "|---|---|---|---|---|"]
    failed_keys = {key: part for part, keys in KEYS_BY_PART.items() for key in keys}
    for target in TARGETS:
        if target.key in results:
            value = results[target.key]
            met = "—" if target.met is None else ("yes" if target.met(value) else "NO")
            figure = _figure_text(target, value, results)
            lines.append(
                f"| `{target.key}` | {figure} | {_floor_text(target.key, results)} "
                f"| {target.target} | {met} |"
            )
        elif failed_keys[target.key] in failures:
            lines.append(f"| `{target.key}` | FAILED | — | {target.target} | NO |")
    return lines


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpu = model or platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None, stdout: IO[str] = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench")
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    sizes = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results_path.unlink(missing_ok=True)  # a failed run must not leave an old file looking new
    log_path = args.out / "bench.log"

    started = time.monotonic()
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    failures: dict[str, str] = {}
    print(f"make bench: {', '.join(parts)}; logs in {log_path}", file=stdout, flush=True)
    with (
        open(log_path, "w", encoding="utf-8", buffering=1) as log,
        tempfile.TemporaryDirectory(prefix="bench-") as workdir,
        XRaySink() as sink,
    ):
        runner = Runner(log, Path(workdir))
        for part in parts:
            part_started = time.monotonic()
            print(f"  {part} ...", end="", file=stdout, flush=True)
            try:
                figures = measure_part(part, sizes, runner, sink)
            except Exception as error:  # noqa: BLE001 - one failed part must not hide the others
                failures[part] = f"{type(error).__name__}: {error}"
                log.write(f"\n--- {part} FAILED\n{traceback.format_exc()}")
                print(f" FAILED ({failures[part]})", file=stdout, flush=True)
                continue
            details.update(figures.pop("details", {}))
            results.update(figures)
            print(f" {time.monotonic() - part_started:.0f} s", file=stdout, flush=True)
        xray_datagrams = sink.datagrams

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"make bench{' --quick' if args.quick else ''}, {when}, {machine()}:",
        "",
        *table({**results, "details": details}, failures),
        "",
    ]
    print("\n".join(lines), file=stdout, flush=True)
    (args.out / "table.md").write_text("\n".join(lines), encoding="utf-8")
    if failures:
        print(f"failed: {', '.join(failures)}; see {log_path}", file=stdout)
        return 1
    document = {
        **results,
        "details": details,
        "run": {
            "date": when,
            "machine": machine(),
            "parts": parts,
            "quick": args.quick,
            "seconds": round(time.monotonic() - started, 1),
            # > 0: active tracing really sent segments from the measured processes
            "xray_datagrams": xray_datagrams,
        },
    }
    results_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {results_path}", file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
