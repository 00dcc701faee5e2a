"""Credentials from Secrets Manager, cached by Powertools Parameters for the environment's life.

Two promises, measured in docs/decisions.md (D34):
- a rotated secret is picked up from the first request that does not match the cached one, and
  within `min_seconds_between_refreshes` (1 s) even while strangers flood us with forged
  signatures: every forced re-read a forger triggers reads the current secret too;
- a previous secret stops being accepted within `MAX_AGE_SECONDS` even when nothing mismatches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.domain.whatsapp.credentials import (
    CredentialsUnavailable,
    SecretFormatError,
    WhatsAppCredentials,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# The cached secret is re-read once it is this old, mismatch or not.
MAX_AGE_SECONDS = 30.0
# Forced re-reads on a mismatch, where anyone on the internet can cause mismatches: a burst of
# a few, then one per second however many forged signatures arrive.
MIN_SECONDS_BETWEEN_FORCED_REFRESHES = 1.0
FORCED_REFRESH_BURST = 5


class RefreshBudget:
    """A token bucket: `burst` tokens, one more every `interval_seconds` (0: no limit).

    A stream of requests can spend tokens only as fast as they come back, so it costs at most
    `burst + elapsed / interval_seconds` refreshes, and leaves no gap longer than one interval
    between two of them.
    """

    def __init__(
        self, *, interval_seconds: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._interval = interval_seconds
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self._interval <= 0:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) / self._interval)
            self._updated = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class SecretsManagerCredentials:
    """`CredentialSource` over one secret id."""

    def __init__(
        self,
        secrets_client: SecretsManagerClient,
        secret_id: str,
        *,
        min_seconds_between_refreshes: float = MIN_SECONDS_BETWEEN_FORCED_REFRESHES,
        refresh_burst: int = FORCED_REFRESH_BURST,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._max_age = max_age_seconds
        self._clock = clock
        self._refresh_budget = RefreshBudget(
            interval_seconds=min_seconds_between_refreshes, burst=refresh_burst, clock=clock
        )
        self._read_at: float | None = None  # by `clock`; Powertools' cache keeps wall time
        self._provider: Any = None  # Powertools' SecretsProvider (its cache), built on first use
        self._client = secrets_client

    def current(self) -> WhatsAppCredentials:
        read_at = self._read_at
        stale = read_at is None or self._clock() - read_at >= self._max_age
        return self._load(force=stale)

    def refreshed(self) -> WhatsAppCredentials | None:
        if not self._refresh_budget.take():
            return None
        return self._load(force=True)

    def _load(self, *, force: bool) -> WhatsAppCredentials:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import (
            GetParameterError,
        )
        from botocore.exceptions import BotoCoreError, ClientError

        if self._provider is None:
            self._provider = SecretsProvider(boto3_client=self._client)
        started = self._clock()
        try:
            value: Any = self._provider.get(
                self._secret_id, max_age=int(self._max_age), force_fetch=force
            )
        except (GetParameterError, ClientError, BotoCoreError) as error:
            raise CredentialsUnavailable(
                f"cannot read secret {self._secret_id}: {type(error).__name__}"
            ) from None
        if force:
            self._read_at = started
        try:
            return WhatsAppCredentials.from_secret_string(value)
        except SecretFormatError as error:
            raise CredentialsUnavailable(f"secret {self._secret_id}: {error}") from None
