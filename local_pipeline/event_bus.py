"""`make run` with EVENT_BUS_NAME: the bus in moto, and the consumer's events on the console.

The consumer publishes to the bus exactly as in AWS (its own client, its own PutEvents); here
a rule on the bus sends everything from `whatsapp-relay` to a local queue, and a thread prints
one console line per event — what a subscriber would receive.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from functions.adapters.event_bus import SOURCE
from local_pipeline.console import Console, short_id
from local_pipeline.emulator import aws_client

SUBSCRIBER_QUEUE = "whatsapp-relay-events-local"
IDLE_SECONDS = 0.25


class LocalEventBus:
    def __init__(self, endpoint: str, bus_name: str) -> None:
        self.bus_name = bus_name
        events = aws_client("events", endpoint)
        self._sqs = aws_client("sqs", endpoint)
        if bus_name != "default" and not any(
            bus["Name"] == bus_name for bus in events.list_event_buses().get("EventBuses", [])
        ):
            events.create_event_bus(Name=bus_name)
        self.queue_url = self._sqs.create_queue(QueueName=SUBSCRIBER_QUEUE)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        events.put_rule(
            Name="local-console",
            EventBusName=bus_name,
            EventPattern=json.dumps({"source": [SOURCE]}),
        )
        events.put_targets(
            Rule="local-console",
            EventBusName=bus_name,
            Targets=[{"Id": "console", "Arn": queue_arn}],
        )

    def watch(self, console: Console, stop: threading.Event) -> None:
        """Print each event the bus delivers, until `stop`."""
        while not stop.is_set():
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                stop.wait(IDLE_SECONDS)
                continue
            for message in messages:
                console.event("event", "cyan", describe(json.loads(message["Body"])))
                self._sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


def describe(event: dict[str, Any]) -> str:
    """`reply.sent msg 3f2a… (slot 0)`: the detail type and the message it is about."""
    detail = event.get("detail") or {}
    about = detail.get("wamid") or detail.get("inReplyTo") or detail.get("replyWamid")
    extra = ""
    if "slot" in detail:
        extra = f" (slot {detail['slot']})"
    elif "status" in detail:
        extra = f" ({detail['status']})"
    elif "reason" in detail:
        extra = f" ({detail['reason']}, {detail.get('errorCode')})"
    return f"{event.get('detail-type')} msg {short_id(about)}{extra}"
