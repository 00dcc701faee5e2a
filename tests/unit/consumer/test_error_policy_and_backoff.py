"""The error policy table and the backoff it drives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from functions.domain.consumer.backoff import delay_seconds
from functions.domain.consumer.error_policy import (
    MAX_VISIBILITY_SECONDS,
    POLICIES,
    Action,
    Backoff,
    classify,
)

pytestmark = pytest.mark.unit

# Meta's "Error codes" page (Jun 2026), copied independently of the table.
REFERENCE = {
    ERROR_CLASS_RATE_LIMIT: [130429, 4, 80007],
    ERROR_CLASS_PAIR_RATE_LIMIT: [131056],
    ERROR_CLASS_TRANSIENT: [1, 2, 131000, 131016, 133004, 131057],
    ERROR_CLASS_AUTH_CONFIG: [0, 190, 10, 3, 200, 250, 299, 131005, 33],
    ERROR_CLASS_QUALITY_POLICY: [131048, 368, 131031, 130497],
    ERROR_CLASS_RECIPIENT: [
        131026, 131047, 131049, 131050, 130472, 131021,
        # Added in 2026: BSUID recipient not supported for this template, identity key
        # mismatch, group messaging (131020, 131041, 131059 and the 1312xx family).
        131062, 137000, 131020, 131041, 131059, 131200, 131215, 131299,
    ],
    ERROR_CLASS_BAD_REQUEST: [
        100, 131008, 131009, 131051, 131052, 131053, 132000, 132001, 132005, 132007, 132012,
        132015, 132016, 132068, 132069, 133010, 135000,
        131063,  # 2026: marketing templates disabled on the Cloud API (permanent, configuration)
    ],
}  # fmt: skip
EXPECTED_ACTION = {
    ERROR_CLASS_RATE_LIMIT: Action.RETRY,
    ERROR_CLASS_PAIR_RATE_LIMIT: Action.RETRY,
    ERROR_CLASS_TRANSIENT: Action.RETRY,
    ERROR_CLASS_AUTH_CONFIG: Action.KEEP,
    ERROR_CLASS_QUALITY_POLICY: Action.KEEP,
    ERROR_CLASS_RECIPIENT: Action.PERMANENT,
    ERROR_CLASS_BAD_REQUEST: Action.PERMANENT,
}


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(code, name) for name, codes in REFERENCE.items() for code in codes],
)
def test_every_reference_code_has_its_class_and_action(code: int, error_class: str) -> None:
    policy = classify(str(code))

    assert policy.name == error_class
    assert policy.action is EXPECTED_ACTION[error_class]


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("timeout", ERROR_CLASS_OUTAGE),
        ("network", ERROR_CLASS_OUTAGE),
        ("http_500", ERROR_CLASS_OUTAGE),
        ("http_503", ERROR_CLASS_OUTAGE),
        ("http_429", ERROR_CLASS_RATE_LIMIT),
        ("http_404", ERROR_CLASS_UNKNOWN),
        ("987654", ERROR_CLASS_UNKNOWN),
        ("credentials_unavailable", ERROR_CLASS_AUTH_CONFIG),
    ],
)
def test_failures_without_a_meta_code(code: str, error_class: str) -> None:
    assert classify(code).name == error_class


def test_a_messages_own_attempts_outlast_a_25_minute_outage() -> None:
    # The least patient schedule jitter can draw: every delay at half its exponential value.
    outage = classify("http_503").backoff
    assert outage is not None
    waits = [delay_seconds(outage, attempt, random_unit=lambda: 0.0) for attempt in range(1, 10)]
    assert sum(waits) >= 25 * 60  # 9 waits between a message's 10 attempts


def test_is_transient_makes_an_unknown_code_transient_but_never_overrides_the_table() -> None:
    assert classify("987654", is_transient=True).name == ERROR_CLASS_TRANSIENT
    assert classify("131026", is_transient=True).name == ERROR_CLASS_RECIPIENT


def test_unknown_codes_are_retried_so_they_end_in_the_dlq() -> None:
    assert classify("987654").action is Action.RETRY


def test_kept_classes_are_alarmed_and_slow_permanent_ones_have_no_backoff() -> None:
    for policy in POLICIES.values():
        if policy.action is Action.PERMANENT:
            assert policy.backoff is None
        else:
            assert policy.backoff is not None
        assert policy.alarmed == (policy.action is Action.KEEP)
    auth = POLICIES[ERROR_CLASS_AUTH_CONFIG].backoff
    rate = POLICIES[ERROR_CLASS_RATE_LIMIT].backoff
    assert auth is not None
    assert rate is not None
    assert auth.floor_seconds > rate.cap_seconds / 4


def _backoff(name: str) -> Backoff:
    backoff = POLICIES[name].backoff
    assert backoff is not None
    return backoff


def test_backoff_grows_exponentially_with_the_receive_count() -> None:
    rate = _backoff(ERROR_CLASS_RATE_LIMIT)

    delays = [delay_seconds(rate, attempt, random_unit=lambda: 1.0) for attempt in range(1, 8)]

    assert delays == [8, 16, 32, 64, 128, 256, 512]


def test_jitter_stays_between_half_and_all_of_the_exponential_delay() -> None:
    rate = _backoff(ERROR_CLASS_RATE_LIMIT)

    low = delay_seconds(rate, 5, random_unit=lambda: 0.0)
    high = delay_seconds(rate, 5, random_unit=lambda: 0.999)

    assert (low, high) == (64, 128)


def test_floor_keeps_a_throttled_number_from_being_hammered() -> None:
    assert delay_seconds(_backoff(ERROR_CLASS_RATE_LIMIT), 1, random_unit=lambda: 0.0) >= 5
    assert delay_seconds(_backoff(ERROR_CLASS_TRANSIENT), 1, random_unit=lambda: 0.0) >= 3


def test_pair_rate_limit_waits_at_least_six_seconds() -> None:
    pair = _backoff(ERROR_CLASS_PAIR_RATE_LIMIT)

    assert delay_seconds(pair, 1, random_unit=lambda: 0.0) >= 6
    assert delay_seconds(pair, 3, random_unit=lambda: 1.0) == 64  # Meta's 4^n


def test_retry_after_is_honoured_and_capped_at_twelve_hours() -> None:
    rate = _backoff(ERROR_CLASS_RATE_LIMIT)

    assert delay_seconds(rate, 1, retry_after_seconds=120, random_unit=lambda: 0.0) == 120
    assert delay_seconds(rate, 1, retry_after_seconds=1, random_unit=lambda: 0.0) == 5
    assert delay_seconds(rate, 1, retry_after_seconds=10**7) == MAX_VISIBILITY_SECONDS


def test_a_schedule_cannot_exceed_sqs_limits() -> None:
    with pytest.raises(ValueError, match="12 hours"):
        Backoff(1, 2, 5, MAX_VISIBILITY_SECONDS + 1)


@given(
    name=st.sampled_from(sorted(n for n, p in POLICIES.items() if p.backoff is not None)),
    attempt=st.integers(min_value=-5, max_value=10_000),
    unit=st.floats(min_value=0.0, max_value=0.9999),
    retry_after=st.none() | st.floats(min_value=0, max_value=1e9),
)
def test_every_delay_is_within_floor_and_twelve_hours(
    name: str, attempt: int, unit: float, retry_after: float | None
) -> None:
    backoff = _backoff(name)

    delay = delay_seconds(
        backoff, attempt, retry_after_seconds=retry_after, random_unit=lambda: unit
    )

    assert backoff.floor_seconds <= delay <= MAX_VISIBILITY_SECONDS
    assert isinstance(delay, int)
