"""When the ingest re-reads its secret: the adapter (`functions/adapters/secrets.py`) driven
through the real signature check (`accept_delivery`), a Secrets Manager stand-in that counts
calls, and a fake clock. No socket, no sleeping: simulated seconds only.

`simulate` is also how the figures in docs/decisions.md (D34) were measured.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.adapters.secrets import (
    FORCED_REFRESH_BURST,
    MAX_AGE_SECONDS,
    MIN_SECONDS_BETWEEN_FORCED_REFRESHES,
    RefreshBudget,
    SecretsManagerCredentials,
)
from functions.domain.ingest.accept import SignatureRejected, accept_delivery
from functions.domain.ingest.signature import sign
from tests.events import builders as b
from tests.fakes import FakePublisher

FORGED = "sha256=" + "f" * 64
BODY = b.fixture_bytes("status_delivered")  # a real delivery that queues nothing


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SecretsManagerStandIn:
    """`get_secret_value` over one secret that can be rotated; counts the calls."""

    app_secret: str = "secret-0"
    calls: int = 0

    def get_secret_value(self, **_: Any) -> dict[str, str]:
        self.calls += 1
        document = {"appSecret": self.app_secret, "verifyToken": "vt", "accessToken": "at"}
        return {"SecretString": json.dumps(document)}


def credentials(store: SecretsManagerStandIn, clock: Clock) -> SecretsManagerCredentials:
    return SecretsManagerCredentials(store, "whatsapp-relay/credentials", clock=clock)  # type: ignore[arg-type]


def delivered(source: SecretsManagerCredentials, signature: str) -> bool:
    try:
        accept_delivery(
            BODY,
            signature,
            credentials=source,
            publisher=FakePublisher(),
            now=lambda: datetime.now(UTC),
        )
    except SignatureRejected:
        return False
    return True


# --- the token bucket -------------------------------------------------------------------------


def test_the_budget_allows_a_burst_then_one_refresh_per_interval() -> None:
    clock = Clock()
    budget = RefreshBudget(interval_seconds=1.0, burst=3, clock=clock)
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert not budget.take()
    clock.now += 0.5
    assert [budget.take(), budget.take()] == [True, False]
    clock.now += 60  # a quiet minute refills the burst, never more
    assert [budget.take() for _ in range(4)] == [True, True, True, False]


def test_no_interval_means_no_limit() -> None:
    budget = RefreshBudget(interval_seconds=0.0, burst=1, clock=Clock())
    assert all(budget.take() for _ in range(1000))


# --- rotation and forgeries -------------------------------------------------------------------


def test_a_forgery_does_not_delay_a_rotated_secret() -> None:
    # Given a warm ingest, and a forger whose bad signature forces a re-read
    clock, store = Clock(), SecretsManagerStandIn()
    source = credentials(store, clock)
    assert delivered(source, sign(BODY, "secret-0"))
    assert not delivered(source, FORGED)

    # When the secret is rotated and Meta's first delivery signed with it arrives
    store.app_secret = "secret-1"
    clock.now += 0.5

    # Then it is accepted at once
    assert delivered(source, sign(BODY, "secret-1"))


def test_the_previous_secret_is_refused_once_the_new_one_was_seen() -> None:
    clock, store = Clock(), SecretsManagerStandIn()
    source = credentials(store, clock)
    assert delivered(source, sign(BODY, "secret-0"))
    store.app_secret = "secret-1"
    assert delivered(source, sign(BODY, "secret-1"))
    assert not delivered(source, sign(BODY, "secret-0"))


def test_the_previous_secret_is_refused_within_the_max_age_with_no_other_traffic() -> None:
    # Given a rotation that no request signed with the new secret has revealed yet
    clock, store = Clock(), SecretsManagerStandIn()
    source = credentials(store, clock)
    assert delivered(source, sign(BODY, "secret-0"))
    store.app_secret = "secret-1"

    # Then the old secret still works while the cached copy is young, and not once it is old
    clock.now += MAX_AGE_SECONDS - 0.001
    assert delivered(source, sign(BODY, "secret-0"))
    clock.now += 0.001
    assert not delivered(source, sign(BODY, "secret-0"))
    assert MAX_AGE_SECONDS <= 30


@dataclass
class FloodResult:
    seconds: float
    forgeries: int
    secrets_manager_calls: int
    rotation_delays: list[float] = field(default_factory=list)

    @property
    def calls_per_second(self) -> float:
        return self.secrets_manager_calls / self.seconds


def simulate(
    *,
    seconds: float,
    forgeries_per_second: float,
    genuine_every_seconds: float,
    rotations_at: Sequence[float],
) -> FloodResult:
    """One warm ingest under a steady flood of forged signatures, while Meta delivers every
    `genuine_every_seconds` (signed with whatever the secret is at that moment: Meta signs with
    the new secret as soon as it is rotated, and redelivers what was refused). Returns the
    Secrets Manager calls and, per rotation, how long until Meta's deliveries were accepted."""
    clock, store = Clock(), SecretsManagerStandIn()
    source = credentials(store, clock)
    start = clock.now
    events: list[tuple[float, int, str]] = []  # (time, order, kind)
    step = 1 / forgeries_per_second
    events += [(i * step, 1, "forgery") for i in range(int(seconds / step))]
    deliveries = int(seconds / genuine_every_seconds)
    events += [(i * genuine_every_seconds, 2, "meta") for i in range(deliveries)]
    events += [(at, 0, "rotate") for at in rotations_at]
    events.sort()
    result = FloodResult(seconds=seconds, forgeries=0, secrets_manager_calls=0)
    rotated_at: float | None = None
    for at, _, kind in events:
        clock.now = start + at
        if kind == "rotate":
            store.app_secret = f"secret-{at}"
            rotated_at = at
        elif kind == "forgery":
            result.forgeries += 1
            assert not delivered(source, FORGED)
        elif delivered(source, sign(BODY, store.app_secret)) and rotated_at is not None:
            result.rotation_delays.append(at - rotated_at)
            rotated_at = None
    result.secrets_manager_calls = store.calls
    return result


def test_a_flood_of_forgeries_costs_one_read_a_second_and_rotations_are_seen_within_one() -> None:
    seconds = 300.0
    rng = random.Random(20261130)
    rotations = sorted(rng.uniform(1, seconds - 10) for _ in range(12))
    result = simulate(
        seconds=seconds,
        forgeries_per_second=100,
        genuine_every_seconds=0.05,
        rotations_at=rotations,
    )

    # Secrets Manager sees the first read, one burst and then one call per refill interval
    most = 1 + FORCED_REFRESH_BURST + seconds / MIN_SECONDS_BETWEEN_FORCED_REFRESHES
    assert result.secrets_manager_calls <= most  # 306 for 30,000 forgeries in 5 minutes
    # Every rotation was accepted, none later than one refill interval (plus Meta's next try)
    assert len(result.rotation_delays) == len(rotations)
    assert max(result.rotation_delays) <= MIN_SECONDS_BETWEEN_FORCED_REFRESHES + 0.05


def test_without_forgeries_meta_pays_one_read_per_max_age_and_rotations_land_at_once() -> None:
    clock, store = Clock(), SecretsManagerStandIn()
    source = credentials(store, clock)
    for tick in range(600 * 10):  # ten minutes of Meta deliveries, 10 a second
        clock.now = 5_000.0 + tick / 10
        if tick == 4_321:
            store.app_secret = "secret-1"
        assert delivered(source, sign(BODY, store.app_secret))
    # the first read, one per max-age, and the one re-read the rotation's first delivery forced
    assert store.calls <= 1 + 600 / MAX_AGE_SECONDS + 1


@pytest.mark.parametrize("burst", [0, -1])
def test_a_budget_needs_a_burst_of_at_least_one(burst: int) -> None:
    with pytest.raises(ValueError, match="burst"):
        RefreshBudget(interval_seconds=1.0, burst=burst)
