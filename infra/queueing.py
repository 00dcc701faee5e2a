"""The inbound FIFO queue and its FIFO dead-letter queue; the status queue and its DLQ."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constants import (
    DLQ_RETENTION_DAYS,
    INBOUND_RETENTION_DAYS,
    STATUS_RETENTION_DAYS,
    VISIBILITY_TIMEOUT_SECONDS,
)


class InboundQueues(Construct):
    """Inbound FIFO queue (one message group per conversation) redriving to a FIFO DLQ.

    SQS-managed encryption (SSE-SQS): no key to pay for or to grant, and nothing outside this
    stack reads the queues. High-throughput FIFO (deduplication and throughput per message
    group) lets many conversations move in parallel; the deduplication id is the globally
    unique `wamid`, so scoping it to the group loses nothing.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        max_receive_count: int,
        removal_policy: RemovalPolicy,
        visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(scope, construct_id)
        if max_receive_count < 1:
            raise ValueError("max_receive_count must be at least 1")
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            fifo=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(DLQ_RETENTION_DAYS),
            removal_policy=removal_policy,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            fifo=True,
            content_based_deduplication=False,
            deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP,
            fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(visibility_timeout_seconds),
            retention_period=Duration.days(INBOUND_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=max_receive_count
            ),
            removal_policy=removal_policy,
        )


class StatusQueues(Construct):
    """The status queue (standard: statuses need no order and no group, and must not share the
    inbound queue's backlog or alarms, see "Statuses on a standard queue of their own, same
    consumer" in docs/decisions.md) redriving to a standard DLQ. SSE-SQS, TLS only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        max_receive_count: int,
        removal_policy: RemovalPolicy,
        visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(DLQ_RETENTION_DAYS),
            removal_policy=removal_policy,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(visibility_timeout_seconds),
            retention_period=Duration.days(STATUS_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=max_receive_count
            ),
            removal_policy=removal_policy,
        )
