"""End to end through `make run`'s code: signed webhooks from many senders, posted by a few
concurrent clients, each inbound wamid checked for exactly one reply at the fake Graph API.

`python -m local_pipeline.run` runs as its own process (its console goes to the bench log); this
process is only the load: `concurrency` threads, each with one keep-alive connection, posting
1-message webhooks in sender round-robin order. Figures:

- ack latency: from the request's first byte sent to its answer read, per webhook (client side);
- replies per second: answered wamids / (last reply's arrival at the fake Graph API - first
  webhook sent), wall clock;
- lost: wamids with no accepted reply once replies stop coming (`settle_seconds` without a new
  one); duplicates: wamids with more than one accepted reply.

A warm-up round of `4 x concurrency` webhooks (other senders, not counted) goes first and is
answered before the clock starts: every execution environment the load needs has started, as in
a Lambda function that has been taking traffic (its cold starts are `make bench`'s cold-start
figures, not this one).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from benchmarks.lambda_env import REPO_ROOT, clean_environment
from benchmarks.webhooks import delivery, new_wamid, sender_number, signature

APP_SECRET = "bench-app-secret"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0


@contextmanager
def local_pipeline(log: IO[str]) -> Iterator[dict[str, Any]]:
    """`make run` on free ports; yields its `/__local/info` (plus `webhook_url`)."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as state_dir:
        env = clean_environment()
        env.update(
            {
                "PORT": "0",
                "FAKE_GRAPH_PORT": "0",
                "LOCAL_STATE_DIR": state_dir,
                "WHATSAPP_APP_SECRET": APP_SECRET,
                # The load is the 2,000 webhooks alone: the fake Graph API's status
                # callbacks (3 more webhooks per reply) would quadruple it.
                "FAKE_GRAPH_STATUSES": "none",
                "NO_COLOR": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "local_pipeline.run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        url_found = threading.Event()
        ready = threading.Event()
        found: dict[str, str] = {}

        def read_console() -> None:  # drained all along: a full pipe would stall the console
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                if line.strip().startswith("webhook URL"):
                    found["url"] = line.split()[-1]
                    url_found.set()
                if line.startswith("Ready."):
                    ready.set()

        reader = threading.Thread(target=read_console, name="make-run-console", daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not ready.wait(0.2):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("make run did not start; see the bench log")
            url = found["url"]
            info = _get_json(url.replace("/webhook", "/__local/info"))
            yield {**info, "webhook_url": url}
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            reader.join(timeout=10)


def _get_json(url: str) -> Any:
    host, port, path = _split(url)
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")
        return json.loads(body)
    finally:
        connection.close()


def _split(url: str) -> tuple[str, int, str]:
    rest = url.removeprefix("http://")
    address, _, path = rest.partition("/")
    host, _, port = address.partition(":")
    return host, int(port), "/" + path


def _post_all(
    url: str, bodies: list[tuple[bytes, str]], concurrency: int
) -> tuple[list[float], Counter[int], float]:
    """Post every body; (latencies in ms, statuses, wall-clock time of the first send)."""
    host, port, path = _split(url)
    latencies: list[float] = [0.0] * len(bodies)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    started_at = time.time()

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                body, header = bodies[index]
                begun = time.perf_counter()
                connection.request(
                    "POST",
                    path,
                    body=body,
                    headers={"Content-Type": "application/json", "X-Hub-Signature-256": header},
                )
                response = connection.getresponse()
                response.read()
                latencies[index] = (time.perf_counter() - begun) * 1000
                with lock:
                    statuses[response.status] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client, name=f"load-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, started_at


def _replies(graph_url: str, wamids: set[str]) -> tuple[Counter[str], float]:
    """Accepted replies per wamid, and the arrival time of the latest one."""
    replies: Counter[str] = Counter()
    latest = 0.0
    for call in _get_json(graph_url + "/__fake/requests"):
        if call.get("kind") != "send" or call.get("answer") != "ok":
            continue
        document = call.get("json") or {}
        wamid = (document.get("context") or {}).get("message_id")
        if wamid in wamids:
            replies[wamid] += 1
            latest = max(latest, float(call.get("received_at") or 0.0))
    return replies, latest


def _wait_for_replies(graph_url: str, wamids: set[str], settle_seconds: float) -> None:
    """Until every wamid has a reply, or none came for `settle_seconds`."""
    replies, _ = _replies(graph_url, wamids)
    last_progress = time.monotonic()
    while len(replies) < len(wamids) and time.monotonic() - last_progress < settle_seconds:
        time.sleep(0.5)
        seen = len(replies)
        replies, _ = _replies(graph_url, wamids)
        if len(replies) > seen:
            last_progress = time.monotonic()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def measure(
    log: IO[str],
    *,
    webhooks: int = 2000,
    senders: int = 200,
    concurrency: int = 8,
    settle_seconds: float = 30.0,
) -> dict[str, Any]:
    messages = [(new_wamid("e2e"), sender_number(index % senders)) for index in range(webhooks)]
    bodies = []
    for message in messages:
        body = delivery([message])
        bodies.append((body, signature(body, APP_SECRET)))
    wamids = {wamid for wamid, _ in messages}
    warmup = [
        (new_wamid("warmup"), sender_number(9000 + index)) for index in range(4 * concurrency)
    ]
    with local_pipeline(log) as info:
        graph_url = info["graph_api_url"]
        warmup_bodies = [
            (body, signature(body, APP_SECRET)) for body in map(delivery, ([m] for m in warmup))
        ]
        _post_all(info["webhook_url"], warmup_bodies, concurrency)
        _wait_for_replies(graph_url, {wamid for wamid, _ in warmup}, settle_seconds)
        latencies, statuses, started_at = _post_all(info["webhook_url"], bodies, concurrency)
        acked_at = time.time()
        _wait_for_replies(graph_url, wamids, settle_seconds)
        time.sleep(1.0)  # a late second reply would show now
        replies, latest = _replies(graph_url, wamids)
    answered = len(replies)
    duration = max(latest - started_at, 1e-9)
    return {
        "e2e_ack_p50_ms": round(percentile(latencies, 0.50), 1),
        "e2e_ack_p99_ms": round(percentile(latencies, 0.99), 1),
        "e2e_replies_per_s": round(answered / duration, 1),
        "e2e_lost": len(wamids) - answered,
        "e2e_duplicates": sum(1 for count in replies.values() if count > 1),
        "details": {
            "e2e": {
                "webhooks": webhooks,
                "senders": senders,
                "concurrency": concurrency,
                "warmup_webhooks": len(warmup),
                "statuses": {str(status): count for status, count in sorted(statuses.items())},
                "ack_mean_ms": round(statistics.fmean(latencies), 1),
                "ack_max_ms": round(max(latencies), 1),
                "acks_per_s": round(webhooks / max(acked_at - started_at, 1e-9), 1),
                "seconds_to_last_reply": round(duration, 2),
            }
        },
    }
