"""Credentials from Secrets Manager, cached by Powertools Parameters for the environment's life."""

from __future__ import annotations

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

# Cached secrets are re-read every few minutes, so a rotation lands without a redeploy...
CACHE_SECONDS = 300
# ...and at once on a mismatch. Where anyone on the internet can cause mismatches (forged
# webhook signatures), at most once a minute: a rotation still lands on the first request signed
# with the new secret, and a flood costs one Secrets Manager call a minute per container.
MIN_SECONDS_BETWEEN_FORCED_REFRESHES = 60.0


class SecretsManagerCredentials:
    """`CredentialSource` over one secret id."""

    def __init__(
        self,
        secrets_client: SecretsManagerClient,
        secret_id: str,
        *,
        min_seconds_between_refreshes: float = MIN_SECONDS_BETWEEN_FORCED_REFRESHES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._min_interval = min_seconds_between_refreshes
        self._clock = clock
        self._last_forced_refresh: float | None = None
        self._provider: Any = None  # Powertools' SecretsProvider (its cache), built on first use
        self._client = secrets_client

    def current(self) -> WhatsAppCredentials:
        return self._load(force=False)

    def refreshed(self) -> WhatsAppCredentials | None:
        now = self._clock()
        last = self._last_forced_refresh
        if last is not None and now - last < self._min_interval:
            return None
        self._last_forced_refresh = now
        return self._load(force=True)

    def _load(self, *, force: bool) -> WhatsAppCredentials:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import (
            GetParameterError,
        )
        from botocore.exceptions import BotoCoreError, ClientError

        if self._provider is None:
            self._provider = SecretsProvider(boto3_client=self._client)
        try:
            value: Any = self._provider.get(
                self._secret_id, max_age=CACHE_SECONDS, force_fetch=force
            )
        except (GetParameterError, ClientError, BotoCoreError) as error:
            raise CredentialsUnavailable(
                f"cannot read secret {self._secret_id}: {type(error).__name__}"
            ) from None
        try:
            return WhatsAppCredentials.from_secret_string(value)
        except SecretFormatError as error:
            raise CredentialsUnavailable(f"secret {self._secret_id}: {error}") from None
