"""THE error policy: every Graph API failure -> an error class -> an action and a backoff.

One table, read top to bottom; change behaviour here, not in `if` statements elsewhere. Codes are
Meta's `error.code` (Meta's Cloud API "Error codes" page, as of Jun 2026), plus the names
the Graph client gives failures that carry no code: `timeout`, `network`, `http_<status>`,
`invalid_response`, and the consumer's own `in_progress`, `store_unavailable`,
`credentials_unavailable`, `poison`, `handler_error`, `handler_timeout` and `reply_unknown`.

Actions:
- RETRY: report the record in `batchItemFailures` after raising its visibility timeout by the
  class's backoff; the queue's `maxReceiveCount` bounds the attempts (then the DLQ).
- KEEP: the same mechanics with a long, slow backoff — nothing will work until an operator acts
  (auth/config) or Meta lifts a restriction (quality/policy); the message must not be lost, so it
  is retried until the DLQ, and the class is alarmed (`GraphApiErrorClass`).
- PERMANENT: record it (metric + WARNING log with the code), report success, never retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from functions.common.names import (
    ERROR_CLASS_AUTH_CONFIG,
    ERROR_CLASS_BAD_REQUEST,
    ERROR_CLASS_OUTAGE,
    ERROR_CLASS_PAIR_RATE_LIMIT,
    ERROR_CLASS_QUALITY_POLICY,
    ERROR_CLASS_RATE_LIMIT,
    ERROR_CLASS_RECIPIENT,
    ERROR_CLASS_TRANSIENT,
    ERROR_CLASS_UNKNOWN,
)

# SQS refuses a visibility timeout above 12 hours.
MAX_VISIBILITY_SECONDS: Final = 43_200

# Names for failures without a Meta code.
CODE_TIMEOUT: Final = "timeout"
CODE_NETWORK: Final = "network"
CODE_INVALID_RESPONSE: Final = "invalid_response"
CODE_IN_PROGRESS: Final = "in_progress"
CODE_BURST_INCOMPLETE: Final = "burst_incomplete"
CODE_STORE_UNAVAILABLE: Final = "store_unavailable"
CODE_CREDENTIALS_UNAVAILABLE: Final = "credentials_unavailable"
CODE_POISON: Final = "poison"
CODE_RETRY_AFTER_WITHOUT_CODE: Final = "http_429"
# A status of a reply the ledger does not know (yet: it may have raced ahead of the send's record).
CODE_REPLY_UNKNOWN: Final = "reply_unknown"
CODE_HTTP_5XX: Final = "http_5xx"  # the table's entry for every http_5NN

# The user's reply handler raised (`handler_error`) or did not return in time
# (`handler_timeout`): functions.domain.consumer.reply_handler.
CODE_HANDLER_ERROR: Final = "handler_error"
CODE_HANDLER_TIMEOUT: Final = "handler_timeout"

# Classes of our own, outside Meta's table (not alarmed as Graph API errors).
ERROR_CLASS_IN_PROGRESS: Final = "in_progress"
ERROR_CLASS_POISON: Final = "poison"
ERROR_CLASS_REPLY_UNKNOWN: Final = "reply_unknown"
ERROR_CLASS_HANDLER: Final = "handler"


class Action(Enum):
    RETRY = "retry"
    KEEP = "keep"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Backoff:
    """delay(attempt) = clamp(base * factor^(attempt-1), floor, cap), jittered, never < floor."""

    base_seconds: float
    factor: float
    floor_seconds: float
    cap_seconds: float

    def __post_init__(self) -> None:
        if not 0 < self.floor_seconds <= self.cap_seconds <= MAX_VISIBILITY_SECONDS:
            raise ValueError("need 0 < floor <= cap <= 12 hours")


@dataclass(frozen=True, slots=True)
class ErrorClassPolicy:
    name: str
    action: Action
    backoff: Backoff | None  # None for PERMANENT
    alarmed: bool = False


NO_BACKOFF = None

POLICIES: Final[Mapping[str, ErrorClassPolicy]] = {
    policy.name: policy
    for policy in (
        # Number, app or WABA over its rate: back off fast-growing, a few seconds at least.
        ErrorClassPolicy(ERROR_CLASS_RATE_LIMIT, Action.RETRY, Backoff(8, 2, 5, 900)),
        # One recipient gets ~1 message / 6 s; Meta suggests 4^n seconds.
        ErrorClassPolicy(ERROR_CLASS_PAIR_RATE_LIMIT, Action.RETRY, Backoff(4, 4, 6, 1_024)),
        # Meta said "try again" (one call's hiccup): retry soon, growing.
        ErrorClassPolicy(ERROR_CLASS_TRANSIENT, Action.RETRY, Backoff(5, 2, 3, 600)),
        # No usable answer at all (5xx pages, timeouts, resets): the Graph API may be down for a
        # while. Steeper, so a message's own 10 attempts outlast a 25-minute outage before it is
        # dead-lettered (half of 10+30+90+270+600x5 s at the lowest jitter), yet capped at 10
        # minutes so the backlog moves soon after Meta recovers.
        ErrorClassPolicy(ERROR_CLASS_OUTAGE, Action.RETRY, Backoff(10, 3, 5, 600)),
        # Unknown codes: transient, bounded by maxReceiveCount, so they end in the DLQ.
        ErrorClassPolicy(ERROR_CLASS_UNKNOWN, Action.RETRY, Backoff(10, 2, 5, 900)),
        # Token, permissions, wrong number id...: an operator must act. Slow and alarmed.
        ErrorClassPolicy(
            ERROR_CLASS_AUTH_CONFIG, Action.KEEP, Backoff(300, 2, 300, 3_600), alarmed=True
        ),
        # Spam limits, blocks, locked account: do not hammer. Slower still, alarmed.
        ErrorClassPolicy(
            ERROR_CLASS_QUALITY_POLICY, Action.KEEP, Backoff(900, 2, 600, 7_200), alarmed=True
        ),
        ErrorClassPolicy(ERROR_CLASS_RECIPIENT, Action.PERMANENT, NO_BACKOFF),
        ErrorClassPolicy(ERROR_CLASS_BAD_REQUEST, Action.PERMANENT, NO_BACKOFF),
        # Another execution holds the wamid: look again shortly.
        ErrorClassPolicy(ERROR_CLASS_IN_PROGRESS, Action.RETRY, Backoff(10, 2, 5, 120)),
        # A record no code can read: to the DLQ in minutes, holding its conversation briefly.
        ErrorClassPolicy(ERROR_CLASS_POISON, Action.RETRY, Backoff(5, 2, 5, 60)),
        # A status that came before its reply was recorded: a few short looks, then dropped.
        ErrorClassPolicy(ERROR_CLASS_REPLY_UNKNOWN, Action.RETRY, Backoff(2, 2, 2, 30)),
        # The user's code failed: a bug, or a system it calls being down. Soon at first, then
        # patiently, like an unknown code; its own attempts end it in the DLQ.
        ErrorClassPolicy(ERROR_CLASS_HANDLER, Action.RETRY, Backoff(10, 2, 5, 900)),
    )
}

# code -> class. Meta's codes from the reference table, then our own names.
CODE_CLASSES: Final[Mapping[str, str]] = {
    **dict.fromkeys(
        ("130429", "4", "80007", CODE_RETRY_AFTER_WITHOUT_CODE), ERROR_CLASS_RATE_LIMIT
    ),
    "131056": ERROR_CLASS_PAIR_RATE_LIMIT,
    **dict.fromkeys(
        (
            "1",
            "2",
            "131000",
            "131016",
            "133004",
            "131057",
            CODE_INVALID_RESPONSE,
            CODE_STORE_UNAVAILABLE,
        ),
        ERROR_CLASS_TRANSIENT,
    ),
    **dict.fromkeys((CODE_HTTP_5XX, CODE_TIMEOUT, CODE_NETWORK), ERROR_CLASS_OUTAGE),
    **dict.fromkeys(
        ("0", "190", "10", "3", "131005", "33", CODE_CREDENTIALS_UNAVAILABLE),
        ERROR_CLASS_AUTH_CONFIG,
    ),
    **{str(code): ERROR_CLASS_AUTH_CONFIG for code in range(200, 300)},
    **dict.fromkeys(("131048", "368", "131031", "130497"), ERROR_CLASS_QUALITY_POLICY),
    **dict.fromkeys(
        ("131026", "131047", "131049", "131050", "130472", "131021"), ERROR_CLASS_RECIPIENT
    ),
    # 2026: a template that cannot go to a BSUID (131062), a changed identity key (137000), and
    # the group-messaging refusals: permanent for this message, nothing to retry.
    **dict.fromkeys(("131062", "137000", "131020", "131041", "131059"), ERROR_CLASS_RECIPIENT),
    **{str(code): ERROR_CLASS_RECIPIENT for code in range(131200, 131300)},
    **dict.fromkeys(
        (
            "100",
            "131008",
            "131009",
            "131051",
            "131052",
            "131053",
            "132000",
            "132001",
            "132005",
            "132007",
            "132012",
            "132015",
            "132016",
            "132068",
            "132069",
            "133010",
            "135000",
            # 2026: marketing templates disabled on the Cloud API - the same request fails
            # until the configuration changes, and the bad-request rate is what alarms.
            "131063",
        ),
        ERROR_CLASS_BAD_REQUEST,
    ),
    # Another execution holds the wamid, or a burst's messages are not all in this batch.
    **dict.fromkeys((CODE_IN_PROGRESS, CODE_BURST_INCOMPLETE), ERROR_CLASS_IN_PROGRESS),
    CODE_POISON: ERROR_CLASS_POISON,
    CODE_REPLY_UNKNOWN: ERROR_CLASS_REPLY_UNKNOWN,
    **dict.fromkeys((CODE_HANDLER_ERROR, CODE_HANDLER_TIMEOUT), ERROR_CLASS_HANDLER),
}

# The 24-hour window closed: only a template may be sent.
WINDOW_CLOSED_CODE: Final = "131047"


def classify(code: str, *, is_transient: bool | None = None) -> ErrorClassPolicy:
    """The policy for a failure code. The table wins; otherwise a 5xx is transient, Meta's
    `is_transient: true` on an unknown code is transient, and anything else is `unknown`."""
    name = CODE_CLASSES.get(code)
    if name is None and code.startswith("http_5"):
        name = CODE_CLASSES[CODE_HTTP_5XX]
    if name is None and is_transient:
        name = ERROR_CLASS_TRANSIENT
    return POLICIES[name or ERROR_CLASS_UNKNOWN]
