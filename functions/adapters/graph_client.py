"""The Graph API over urllib3: one connection pool per execution environment, keep-alive,
an overall deadline per call, no retries and no sleeps (retrying is SQS's job).

Every failure is a typed `GraphApiError` carrying Meta's `code`, `details`, `fbtrace_id`,
`is_transient`, the HTTP status and a parsed `Retry-After`: Meta's error JSON, an HTML 5xx page
(`http_<status>`), a timeout (`timeout`), a refused or reset connection (`network`) alike. Any
answer Meta gave is read as an answer, whatever its body or headers (not JSON, invalid UTF-8,
nested past the recursion limit, huge, a `Retry-After` in other scripts' digits): a status that
arrived decides, so a 2xx whose body never finished is still an accepted send, and only a send
whose status never arrived is a `timeout` or `network` error. The access token comes from the
credentials source on every call (cached there) and is never logged or put in an error.

A call's deadline covers connecting, sending and every byte of the answer: urllib3's read
timeout bounds each `recv` alone, so a server dripping one byte at a time could hold a call for
minutes. The pool's connections read through `_DeadlineReader`, which gives each `recv` only
what is left of the call's deadline (docs/decisions.md).
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from functions.domain.consumer.error_policy import (
    CODE_CREDENTIALS_UNAVAILABLE,
    CODE_INVALID_RESPONSE,
    CODE_NETWORK,
    CODE_TIMEOUT,
    MAX_VISIBILITY_SECONDS,
)
from functions.domain.consumer.ports import GraphApiError
from functions.domain.whatsapp.credentials import CredentialSource, CredentialsUnavailable

if TYPE_CHECKING:
    import socket

    import urllib3

# Two calls per record (read receipt, reply), both inside the 30 s function timeout.
CONNECT_TIMEOUT_SECONDS: Final = 3.0
READ_TIMEOUT_SECONDS: Final = 8.0
# A call's whole budget (connect, send, every byte of the answer) when the caller gives none.
DEFAULT_CALL_SECONDS: Final = 10.0
# A call gets at most the invocation's remaining time less this margin, and never less than
# MIN_CALL_SECONDS (Graph answers in well under that).
DEADLINE_MARGIN_SECONDS: Final = 1.0
MIN_CALL_SECONDS: Final = 0.5
POOL_MAXSIZE: Final = 10  # one connection per concurrently processed conversation
TOKEN_EXPIRED_CODE: Final = 190
# Meta's answers are a few hundred bytes; beyond this an answer is judged by its status alone.
MAX_ANSWER_BYTES: Final = 256 * 1024
# Meta's codes have at most six digits; a bigger number is not a code (and would make an
# unusable metric dimension).
MAX_META_CODE: Final = 10**9
_MAX_ERROR_TEXT = 300
_MAX_TRACE_ID = 100
_ASCII_DIGITS = re.compile(r"[0-9]{1,12}")
_ASCII_DELAY = re.compile(r"[0-9]+")
_HEADER_SAFE = re.compile(r"[!-~]+")  # what an access token may hold and still be a header


@dataclass(slots=True)
class _Call:
    """The call in progress on this thread: its deadline, and the status line once it arrived."""

    deadline: float
    status: int | None = None


_current = threading.local()


def _call_in_progress() -> _Call | None:
    call: _Call | None = getattr(_current, "call", None)
    return call


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side that gives each `recv` only what is left of the call's deadline
    (never more than the socket's own timeout), and refuses to wait once it has passed."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline
        self._per_read = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the call's deadline passed while the answer was arriving")
        per_read = self._per_read
        self._sock.settimeout(remaining if per_read is None else min(per_read, remaining))
        try:
            count: int | None = self._raw.readinto(buffer)
            return count
        finally:
            # A kept-alive connection sends its next request under its own timeout.
            self._sock.settimeout(per_read)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What `http.client.HTTPResponse` sees instead of the socket: it only calls `makefile`."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


@lru_cache(maxsize=1)
def _deadline_pool_classes() -> dict[str, Any]:
    """urllib3's pools for http and https, whose responses read through `_DeadlineReader` while
    a call of this module is in progress on the thread (built on first use: urllib3 is loaded
    lazily)."""
    import http.client

    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class DeadlineResponse(http.client.HTTPResponse):
        def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
            call = _call_in_progress()
            reading: Any = sock if call is None else _DeadlineSocket(sock, call.deadline)
            super().__init__(reading, *args, **kwargs)

        def begin(self) -> None:
            try:
                super().begin()
            finally:
                # Once the status line is in, Meta has answered, whatever follows.
                call = _call_in_progress()
                if call is not None and isinstance(self.status, int):
                    call.status = self.status

    class DeadlineHTTPConnection(HTTPConnection):
        response_class = DeadlineResponse

    class DeadlineHTTPSConnection(HTTPSConnection):
        response_class = DeadlineResponse

    class DeadlineHTTPPool(HTTPConnectionPool):
        ConnectionCls = DeadlineHTTPConnection

    class DeadlineHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = DeadlineHTTPSConnection

    return {"http": DeadlineHTTPPool, "https": DeadlineHTTPSPool}


def new_pool(**options: Any) -> urllib3.PoolManager:
    """A connection pool whose calls keep their overall deadline (`options` go to urllib3's
    `PoolManager`, e.g. `timeout`)."""
    import urllib3

    settings: dict[str, Any] = {
        "num_pools": 4,
        "maxsize": POOL_MAXSIZE,
        "block": False,
        "retries": False,
        "timeout": urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
    }
    pool = urllib3.PoolManager(**(settings | options))
    pool.pool_classes_by_scheme = _deadline_pool_classes()
    return pool


@lru_cache(maxsize=1)
def shared_pool() -> urllib3.PoolManager:
    """The execution environment's connection pool (keep-alive across invocations)."""
    return new_pool()


class GraphClient:
    """`GraphApi` for `{base_url}/{version}/{phone_number_id}/messages`. `pool` defaults to the
    shared one; another should come from `new_pool` (a plain urllib3 pool bounds each read, not
    the whole answer)."""

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

        if not _HEADER_SAFE.fullmatch(token):
            raise GraphApiError(
                CODE_CREDENTIALS_UNAVAILABLE, message="the access token is not a valid header"
            )
        pool = self._pool or shared_pool()
        budget = DEFAULT_CALL_SECONDS if timeout_seconds is None else max(0.0, timeout_seconds)
        call = _Call(deadline=time.monotonic() + budget)
        # Without a deadline from the caller, the pool's own per-step timeouts apply as well.
        per_step: dict[str, Any] = (
            {}
            if timeout_seconds is None
            else {
                "timeout": urllib3.Timeout(
                    connect=min(CONNECT_TIMEOUT_SECONDS, budget),
                    read=min(READ_TIMEOUT_SECONDS, budget),
                )
            }
        )
        _current.call = call
        try:
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
                    preload_content=False,
                    **per_step,
                )
            except (urllib3.exceptions.HTTPError, OSError) as error:
                if call.status is not None:
                    # The status line arrived, then the headers broke or the deadline passed.
                    return answer_for_status(call.status)
                raise _unanswered(error) from None
            return read_answer(response)
        finally:
            _current.call = None

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


def read_answer(response: urllib3.BaseHTTPResponse) -> Mapping[str, Any]:
    """The document of a 2xx answer (`{}` when it is not a JSON object); any other status raises
    its `GraphApiError`. The body counts only when it fully arrived in time and is small enough
    to be Meta's; otherwise the status alone decides. The connection goes back to the pool only
    after a complete answer."""
    import urllib3

    data: bytes | None = None
    try:
        received = response.read(MAX_ANSWER_BYTES + 1)
        data = received if len(received) <= MAX_ANSWER_BYTES else None
    except (urllib3.exceptions.HTTPError, OSError):
        data = None
    finally:
        if data is None:
            response.close()
        response.release_conn()
    return answer_for_status(response.status, data, response.headers)


def answer_for_status(
    status: int, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Mapping[str, Any]:
    """A 2xx is an answer whatever its body; any other status is a `GraphApiError`."""
    document = _json_object(data)
    if 200 <= status < 300:
        return document or {}
    raise meta_error(status, document, headers.get("Retry-After") if headers else None)


def _unanswered(error: BaseException) -> GraphApiError:
    """A call whose status line never arrived: timed out, or the connection failed."""
    import urllib3

    if isinstance(error, urllib3.exceptions.NewConnectionError):
        # Refused / unresolvable (urllib3 makes it a ConnectTimeoutError subclass).
        return GraphApiError(CODE_NETWORK, message=type(error).__name__)
    if isinstance(error, urllib3.exceptions.TimeoutError | TimeoutError):
        return GraphApiError(CODE_TIMEOUT, message=type(error).__name__)
    # ProtocolError (reset, remote closed), SSLError, ...
    return GraphApiError(CODE_NETWORK, message=type(error).__name__)


def meta_error(
    status: int, document: Mapping[str, Any] | None, retry_after: str | None
) -> GraphApiError:
    """Read Meta's `{"error": {...}}`; a body without one (or without a usable code) is
    `http_<status>`. Never raises: every part is checked before it is used."""
    retry_after_seconds = parse_retry_after(retry_after)
    error = document.get("error") if isinstance(document, Mapping) else None
    if not isinstance(error, Mapping):
        return GraphApiError(
            f"http_{status}", http_status=status, retry_after_seconds=retry_after_seconds
        )
    meta_code = _meta_code(error.get("code"))
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, Mapping) else None
    is_transient = error.get("is_transient")
    fbtrace_id = error.get("fbtrace_id")
    return GraphApiError(
        str(meta_code) if meta_code is not None else f"http_{status}",
        message=_short(error.get("message")),
        http_status=status,
        meta_code=meta_code,
        subcode=_meta_code(error.get("error_subcode")),
        details=_short(details),
        fbtrace_id=fbtrace_id[:_MAX_TRACE_ID] if isinstance(fbtrace_id, str) else None,
        is_transient=is_transient if isinstance(is_transient, bool) else None,
        retry_after_seconds=retry_after_seconds,
    )


def _meta_code(value: object) -> int | None:
    """A code as Meta sends it (a number, or digits in a string), within a code's range."""
    if isinstance(value, str) and _ASCII_DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_META_CODE:
        return value
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds, at most 12 hours (SQS's longest visibility timeout):
    delta-seconds (ASCII digits only: `str.isdigit` also accepts digits that `float` refuses)
    or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip(" \t")
    if _ASCII_DELAY.fullmatch(value):
        # Any number of digits is a delay; past twelve hours it is twelve hours.
        too_long = len(value) > len(str(MAX_VISIBILITY_SECONDS))
        return float(
            MAX_VISIBILITY_SECONDS if too_long else min(int(value), MAX_VISIBILITY_SECONDS)
        )
    try:
        seconds = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), float(MAX_VISIBILITY_SECONDS))


def _json_object(data: bytes | None) -> Mapping[str, Any] | None:
    """The answer as a JSON object; None for anything else (not JSON, not UTF-8, nested past
    the recursion limit, numbers past Python's digit limit...)."""
    if not data:
        return None
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, Mapping) else None


def _short(value: object) -> str:
    return value[:_MAX_ERROR_TEXT] if isinstance(value, str) else ""
