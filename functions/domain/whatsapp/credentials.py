"""The WhatsApp app's credentials, as stored in the secret named by `WHATSAPP_SECRET_ID`, and the
port both functions read them through (`CredentialSource`)."""

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from functions.common.names import (
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)


class SecretFormatError(ValueError):
    """The secret exists but is not the JSON docs/contract.md describes. Never carries values."""


@dataclass(frozen=True, slots=True)
class WhatsAppCredentials:
    # repr=False: a credentials object that reaches a log line or a traceback shows no secret.
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    access_token: str = field(repr=False)

    @classmethod
    def from_secret_string(cls, secret_string: str | Mapping[str, Any]) -> "WhatsAppCredentials":
        if isinstance(secret_string, Mapping):
            document: Any = secret_string
        else:
            try:
                document = json.loads(secret_string)
            except ValueError:
                raise SecretFormatError("the secret is not JSON") from None
        if not isinstance(document, Mapping):
            raise SecretFormatError("the secret is not a JSON object")
        keys = (SECRET_KEY_APP_SECRET, SECRET_KEY_VERIFY_TOKEN, SECRET_KEY_ACCESS_TOKEN)
        wrong = [key for key in keys if not isinstance(document.get(key), str)]
        if wrong:
            raise SecretFormatError(f"the secret lacks string values for: {', '.join(wrong)}")
        return cls(
            app_secret=document[SECRET_KEY_APP_SECRET],
            verify_token=document[SECRET_KEY_VERIFY_TOKEN],
            access_token=document[SECRET_KEY_ACCESS_TOKEN],
        )

    def verify_token_matches(self, candidate: str | None) -> bool:
        """Constant-time comparison; an empty configured token matches nothing."""
        if candidate is None or not self.verify_token:
            return False
        return hmac.compare_digest(
            self.verify_token.encode("utf-8"), candidate.encode("utf-8", "replace")
        )


class CredentialsUnavailable(Exception):
    """The credentials could not be read (secret missing, unreadable, or the store is down)."""


class CredentialSource(Protocol):
    def current(self) -> WhatsAppCredentials:
        """The cached credentials (fetched on first use). Raises `CredentialsUnavailable`."""
        ...

    def refreshed(self) -> WhatsAppCredentials | None:
        """Fresh credentials after a mismatch (the secret may have been rotated), or None when
        a refresh happened too recently to be worth another call."""
        ...
