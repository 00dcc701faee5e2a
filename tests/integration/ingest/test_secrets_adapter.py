"""Secrets Manager credentials through Powertools' cache, against moto's server."""

from __future__ import annotations

import json
import uuid

import pytest

from functions.adapters.aws import client as aws_client
from functions.adapters.secrets import (
    FORCED_REFRESH_BURST,
    MAX_AGE_SECONDS,
    MIN_SECONDS_BETWEEN_FORCED_REFRESHES,
    SecretsManagerCredentials,
)
from functions.domain.whatsapp.credentials import CredentialsUnavailable
from tests.conftest import APP_SECRET, boto_client

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reads_are_cached_refreshed_when_old_and_forced_refreshes_are_budgeted(
    aws: str, whatsapp_secret: str
) -> None:
    clock = Clock()
    source = SecretsManagerCredentials(aws_client("secretsmanager"), whatsapp_secret, clock=clock)
    secrets = boto_client("secretsmanager", aws)

    assert source.current().app_secret == APP_SECRET
    secrets.put_secret_value(
        SecretId=whatsapp_secret,
        SecretString=json.dumps({"appSecret": "v2", "verifyToken": "v", "accessToken": "t"}),
    )
    assert source.current().app_secret == APP_SECRET  # cached
    clock.now += MAX_AGE_SECONDS
    assert source.current().app_secret == "v2"  # re-read once old enough, mismatch or not

    secrets.put_secret_value(
        SecretId=whatsapp_secret,
        SecretString=json.dumps({"appSecret": "v3", "verifyToken": "v", "accessToken": "t"}),
    )
    refreshed = source.refreshed()
    assert refreshed is not None
    assert refreshed.app_secret == "v3"
    assert source.current().app_secret == "v3"
    for _ in range(FORCED_REFRESH_BURST - 1):  # a flood of bad signatures: a burst...
        assert source.refreshed() is not None
    assert source.refreshed() is None  # ...then nothing...
    clock.now += MIN_SECONDS_BETWEEN_FORCED_REFRESHES
    assert source.refreshed() is not None  # ...but one a second


def test_a_missing_secret_is_unavailable(aws: str) -> None:
    source = SecretsManagerCredentials(aws_client("secretsmanager"), f"missing-{uuid.uuid4().hex}")
    with pytest.raises(CredentialsUnavailable):
        source.current()


def test_a_malformed_secret_is_unavailable_without_showing_its_value(aws: str) -> None:
    name = f"malformed-{uuid.uuid4().hex[:8]}"
    boto_client("secretsmanager", aws).create_secret(
        Name=name, SecretString='{"appSecret": "do-not-print-me"}'
    )
    with pytest.raises(CredentialsUnavailable) as caught:
        SecretsManagerCredentials(aws_client("secretsmanager"), name).current()
    assert "do-not-print-me" not in str(caught.value)
    assert "verifyToken" in str(caught.value)
