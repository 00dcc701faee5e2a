"""moto's server exactly as the local pipeline runs it (`local_pipeline.emulator.serve`), but
living by a clock the fault suite moves forward, so hours of backoff take no time.

`python -m tests.faults.emulator_process`; besides moto's API it answers one path of its own:
- `POST /__virtual_time` with `{"offset": seconds}`: how far ahead of the wall clock SQS now is
  (it never goes back);
- `GET /__virtual_time?queue=<name>` (also the POST's answer): `{"now", "offset", "queues":
  {name: {"messages", "next_visible"}}}` — how many messages the queue holds, and the moment
  the first invisible (backed off, in flight or delayed) one becomes visible, or null.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from local_pipeline.config import LOCAL_ACCOUNT_ID, LOCAL_REGION
from local_pipeline.emulator import WsgiApp, serve

CONTROL_PATH = "/__virtual_time"
_offset = [0.0]


def virtual_time() -> float:
    return time.time() + _offset[0]


def _queue_state(name: str) -> dict[str, Any]:
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[LOCAL_ACCOUNT_ID][LOCAL_REGION].queues.get(name)
    if queue is None:
        return {"messages": 0, "next_visible": None}
    now_ms = virtual_time() * 1000
    waiting = [
        max(message.visible_at, message.delayed_until)
        for message in list(queue._messages)
        if max(message.visible_at, message.delayed_until) >= now_ms
    ]
    return {
        "messages": len(queue._messages),
        "next_visible": min(waiting) / 1000 if waiting else None,
    }


def with_virtual_time_control(app: WsgiApp) -> WsgiApp:
    def control(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != CONTROL_PATH:
            return app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            document = json.loads(environ["wsgi.input"].read(length) or b"{}")
            _offset[0] = max(_offset[0], float(document["offset"]))
        names = parse_qs(environ.get("QUERY_STRING") or "").get("queue", [])
        payload = json.dumps(
            {
                "now": virtual_time(),
                "offset": _offset[0],
                "queues": {name: _queue_state(name) for name in names},
            }
        ).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        )
        return [payload]

    return control


if __name__ == "__main__":
    serve(wrap=with_virtual_time_control, clock=virtual_time)
