"""The Graph API over urllib3: one connection pool per execution environment, keep-alive,
timeouts well inside the function's, no retries and no sleeps (retrying is SQS's job).

Every failure is a typed `GraphApiError` carrying Meta's `code`, `details`, `fbtrace_id`,
`is_transient`, the HTTP status and a parsed `Retry-After`: Meta's error JSON, an HTML 5xx page
(`http_<status>`), a timeout (`timeout`), a refused or reset connection (`network`) alike. The
access token comes from the credentials source on every call (cached there) and is never logged
or put in an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from functions.domain.consumer.error_policy import (
    CODE_CREDENTIALS_UNAVAILABLE,
    CODE_INVALID_RESPONSE,
    CODE_NETWORK,
    CODE_TIMEOUT,
)
from functions.domain.consumer.ports import GraphApiError
from functions.domain.whatsapp.credentials import CredentialSource, CredentialsUnavailable

if TYPE_CHECKING:
    import urllib3

# Two calls per record (read receipt, reply), both inside the 30 s function timeout.
CONNECT_TIMEOUT_SECONDS: Final = 3.0
READ_TIMEOUT_SECONDS: Final = 8.0
# A call gets at most the invocation's remaining time less this margin, and never less than
# MIN_CALL_SECONDS (Graph answers in well under that).
DEADLINE_MARGIN_SECONDS: Final = 1.0
MIN_CALL_SECONDS: Final = 0.5
POOL_MAXSIZE: Final = 10  # one connection per concurrently processed conversation
TOKEN_EXPIRED_CODE: Final = 190
_MAX_ERROR_TEXT = 300


@lru_cache(maxsize=1)
def shared_pool() -> urllib3.PoolManager:
    """The execution environment's connection pool (keep-alive across invocations)."""
    import urllib3

    return urllib3.PoolManager(
        num_pools=4,
        maxsize=POOL_MAXSIZE,
        block=False,
        retries=False,
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
    )


class GraphClient:
    """`GraphApi` for `{base_url}/{version}/{phone_number_id}/messages`."""

    def __init__(
        self,
        *,
        base_url: str,
        version: str,
        credentials: CredentialSource,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self._base = f"{base_url.rstrip('/')}/{version.strip('/')}"
        self._credentials = credentials
        self._pool = pool

    def mark_read(
        self, phone_number_id: str, body: Mapping[str, Any], *, timeout_seconds: float | None = None
    ) -> None:
        document = self._post(phone_number_id, body, timeout_seconds)
        if document.get("success") is False:
            raise GraphApiError(CODE_INVALID_RESPONSE, message="read receipt not acknowledged")

    def send(
        self, phone_number_id: str, body: Mapping[str, Any], *, timeout_seconds: float | None = None
    ) -> str | None:
        """The new message's wamid. A 2xx is an accepted send even when its body is not the
        answer Meta documents: treating it as a failure would retry, and send the reply twice."""
        document = self._post(phone_number_id, body, timeout_seconds)
        messages = document.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], Mapping):
            message_id = messages[0].get("id")
            if isinstance(message_id, str) and message_id:
                return message_id
        return None

    # ------------------------------------------------------------------------------------------

    def _post(
        self, phone_number_id: str, body: Mapping[str, Any], timeout_seconds: float | None = None
    ) -> Mapping[str, Any]:
        try:
            token = self._credentials.current().access_token
        except CredentialsUnavailable as error:
            raise GraphApiError(CODE_CREDENTIALS_UNAVAILABLE, message=str(error)) from None
        try:
            return self._request(phone_number_id, body, token, timeout_seconds)
        except GraphApiError as refused:
            if refused.meta_code != TOKEN_EXPIRED_CODE:
                raise
            # The token may have been rotated in the secret since it was cached: read it again
            # and, if it changed, try once more now rather than after a backoff.
            fresh = self._fresh_token()
            if fresh is None or fresh == token:
                raise
            return self._request(phone_number_id, body, fresh, timeout_seconds)

    def _request(
        self,
        phone_number_id: str,
        body: Mapping[str, Any],
        token: str,
        timeout_seconds: float | None,
    ) -> Mapping[str, Any]:
        import urllib3

        pool = self._pool or shared_pool()
        # Without a deadline, the pool's own timeouts apply.
        deadline: dict[str, Any] = (
            {}
            if timeout_seconds is None
            else {
                "timeout": urllib3.Timeout(
                    connect=min(CONNECT_TIMEOUT_SECONDS, timeout_seconds),
                    read=min(READ_TIMEOUT_SECONDS, timeout_seconds),
                )
            }
        )
        try:
            response = pool.request(
                "POST",
                f"{self._base}/{phone_number_id}/messages",
                body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
                retries=False,
                preload_content=True,
                **deadline,
            )
        except urllib3.exceptions.NewConnectionError as error:
            # Refused / unresolvable (urllib3 makes it a ConnectTimeoutError subclass).
            raise GraphApiError(CODE_NETWORK, message=type(error).__name__) from None
        except (urllib3.exceptions.TimeoutError, TimeoutError) as error:
            raise GraphApiError(CODE_TIMEOUT, message=type(error).__name__) from None
        except urllib3.exceptions.HTTPError as error:
            # NewConnectionError, ProtocolError (reset, remote closed), SSLError, ...
            raise GraphApiError(CODE_NETWORK, message=type(error).__name__) from None
        except OSError as error:
            raise GraphApiError(CODE_NETWORK, message=type(error).__name__) from None
        document = _json_object(response.data)
        if 200 <= response.status < 300:
            return document or {}
        raise meta_error(response.status, document, response.headers.get("Retry-After"))

    def _fresh_token(self) -> str | None:
        try:
            fresh = self._credentials.refreshed()
        except CredentialsUnavailable:
            return None  # the 190 is what gets reported; the next attempt tries the secret again
        return fresh.access_token if fresh is not None else None


class DeadlineBoundGraph:
    """`GraphApi` for one invocation: no call may outlast the function's remaining time, so a
    hanging Graph API ends in a `timeout` the consumer can act on, not in Lambda killing it
    mid-send."""

    def __init__(self, client: GraphClient, remaining_seconds: Callable[[], float]) -> None:
        self._client = client
        self._remaining_seconds = remaining_seconds

    def mark_read(self, phone_number_id: str, body: Mapping[str, Any]) -> None:
        self._client.mark_read(phone_number_id, body, timeout_seconds=self._limit())

    def send(self, phone_number_id: str, body: Mapping[str, Any]) -> str | None:
        return self._client.send(phone_number_id, body, timeout_seconds=self._limit())

    def _limit(self) -> float:
        return max(MIN_CALL_SECONDS, self._remaining_seconds() - DEADLINE_MARGIN_SECONDS)


def meta_error(
    status: int, document: Mapping[str, Any] | None, retry_after: str | None
) -> GraphApiError:
    """Read Meta's `{"error": {...}}`; a body without one is `http_<status>`."""
    retry_after_seconds = parse_retry_after(retry_after)
    error = document.get("error") if document is not None else None
    if not isinstance(error, Mapping):
        return GraphApiError(
            f"http_{status}", http_status=status, retry_after_seconds=retry_after_seconds
        )
    code = error.get("code")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    meta_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, Mapping) else None
    subcode = error.get("error_subcode")
    is_transient = error.get("is_transient")
    fbtrace_id = error.get("fbtrace_id")
    return GraphApiError(
        str(meta_code) if meta_code is not None else f"http_{status}",
        message=_short(error.get("message")),
        http_status=status,
        meta_code=meta_code,
        subcode=subcode if isinstance(subcode, int) else None,
        details=_short(details),
        fbtrace_id=fbtrace_id if isinstance(fbtrace_id, str) else None,
        is_transient=is_transient if isinstance(is_transient, bool) else None,
        retry_after_seconds=retry_after_seconds,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _json_object(data: bytes) -> Mapping[str, Any] | None:
    try:
        document = json.loads(data) if data else None
    except ValueError:
        return None
    return document if isinstance(document, Mapping) else None


def _short(value: object) -> str:
    return value[:_MAX_ERROR_TEXT] if isinstance(value, str) else ""
