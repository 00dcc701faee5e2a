"""A stand-in for `functions.consumer.app.handler`, for tests of the local event source.

It does the least a consumer does — mark read, reply in thread, report failures after raising the
record's visibility timeout — so the poller, console and gateway can be tested on their own.
The real pipeline tests use the real consumer.
"""

from __future__ import annotations

import json
import os
from typing import Any

import urllib3

from functions.common import aws_clients
from functions.common.names import ENV_GRAPH_API_URL, ENV_QUEUE_URL
from local_pipeline.config import LocalConfig

RETRY_VISIBILITY_SECONDS = 1
NO_REPLY_TYPES = frozenset({"reaction", "system"})
_answered: set[str] = set()
_http = urllib3.PoolManager()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        if not _handle(json.loads(record["body"])):
            aws_clients.client("sqs").change_message_visibility(
                QueueUrl=os.environ[ENV_QUEUE_URL],
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=RETRY_VISIBILITY_SECONDS,
            )
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def _handle(queued: dict[str, Any]) -> bool:
    wamid = queued["wamid"]
    if wamid in _answered:
        return True
    message = queued["message"]
    url = f"{os.environ[ENV_GRAPH_API_URL]}/v25.0/{queued['business']['phoneNumberId']}/messages"
    if not _post(url, {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}):
        return False
    if message.get("type") not in NO_REPLY_TYPES:
        reply = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.get("from"),
            "type": "text",
            "text": {"body": "got it"},
            "context": {"message_id": wamid},
        }
        if not _post(url, reply):
            return False
    _answered.add(wamid)
    return True


def _post(url: str, document: dict[str, Any]) -> bool:
    response = _http.request(
        "POST",
        url,
        body=json.dumps(document).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {LocalConfig.from_env().access_token}",
        },
        timeout=5.0,
        retries=False,
    )
    return bool(response.status == 200)
