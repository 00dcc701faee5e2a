"""API Gateway (REST API, Lambda proxy integration, payload 1.0) on 127.0.0.1.

Each real HTTP request to `/webhook` becomes the proxy event API Gateway would build, is handed
to the ingest handler, and the handler's answer goes back as HTTP: status, headers and body
exactly. Like API Gateway, an unknown path answers 403 "Missing Authentication Token", and a
handler that raises or answers garbage becomes 502 "Internal server error".

Requests are served concurrently, each by its own thread, and handed to `invoke` concurrently,
as API Gateway invokes Lambda: `invoke` must run each in an execution environment of its own
(module-level state such as Powertools' metrics is not meant to be shared by concurrent
invocations; `make run` passes `environments.ExecutionEnvironments.invoke`). The console hears
of an exchange once its answer is sent.
"""

from __future__ import annotations

import base64
import errno
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local_pipeline.config import LOCAL_ACCOUNT_ID

RESOURCE = "/webhook"
STAGE = "local"
INFO_PATH = "/__local/info"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

Invoke = Callable[[dict[str, Any]], Any]


class PortInUse(OSError):
    """The webhook port is taken: the message says which port and what to do."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, as observed by the gateway (for the console)."""

    method: str
    path: str
    status: int
    request_body: bytes
    response_body: bytes
    duration_ms: float
    received_at: float  # time.monotonic() when the request was read
    error: str | None = None


def build_proxy_event(
    *,
    method: str,
    raw_path: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str = "127.0.0.1",
    host: str = "127.0.0.1",
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The REST API proxy event (payload 1.0) for one HTTP request.

    Header and query names keep their case; `headers` / `queryStringParameters` hold the last
    value of each name, the `multiValue…` maps hold all of them, and both are null when empty,
    as API Gateway sends them. A body that is not UTF-8 travels base64-encoded.
    """
    split = urlsplit(raw_path)
    path = split.path or "/"
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    text_body: str | None
    if not body:
        text_body, is_base64 = None, False
    else:
        try:
            text_body, is_base64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text_body, is_base64 = base64.b64encode(body).decode("ascii"), True
    moment = now or datetime.now(UTC)
    request_id = request_id or str(uuid.uuid4())
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
    return {
        "resource": RESOURCE,
        "path": path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": RESOURCE,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{STAGE}{path}",
            "accountId": LOCAL_ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": host.split(":", maxsplit=1)[0],
            "requestTimeEpoch": int(moment.timestamp() * 1000),
            "requestId": request_id,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "domainName": host,
            "apiId": "local",
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InvalidProxyResponse(ValueError):
    """The handler answered something API Gateway cannot turn into HTTP (it answers 502)."""


def proxy_response_to_http(response: object) -> HttpAnswer:
    """The HTTP answer API Gateway makes of a Lambda proxy response."""
    if not isinstance(response, Mapping):
        raise InvalidProxyResponse("the handler did not return an object")
    status = response.get("statusCode")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidProxyResponse("statusCode is missing or not an HTTP status")
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    multi = response.get("multiValueHeaders") or {}
    single = response.get("headers") or {}
    if not isinstance(multi, Mapping) or not isinstance(single, Mapping):
        raise InvalidProxyResponse("headers must be objects")
    for name, values in multi.items():
        if not isinstance(values, list):
            raise InvalidProxyResponse("multiValueHeaders values must be lists")
        headers.extend((str(name), str(value)) for value in values)
        seen.add(str(name).lower())
    for name, value in single.items():
        if str(name).lower() not in seen:
            headers.append((str(name), str(value)))
    body = response.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise InvalidProxyResponse("body must be a string")
    elif response.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raise InvalidProxyResponse("body is marked base64 but is not") from None
    else:
        raw = body.encode("utf-8")
    return HttpAnswer(status=status, headers=headers, body=raw)


def _json_answer(status: int, document: Mapping[str, Any]) -> HttpAnswer:
    return HttpAnswer(
        status=status,
        headers=[("Content-Type", "application/json")],
        body=json.dumps(document).encode("utf-8"),
    )


class Gateway:
    """The HTTP endpoint; `start()` binds 127.0.0.1:`port` (0: a free port) and serves."""

    def __init__(
        self,
        invoke: Invoke,
        *,
        port: int,
        on_exchange: Callable[[Exchange], None] | None = None,
        info: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._invoke = invoke
        self._requested_port = port
        self._on_exchange = on_exchange
        self._info = info
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{RESOURCE}"

    def start(self) -> None:
        self.bind()
        self.serve()

    def bind(self) -> None:
        """Take the port (requests wait in the listen backlog until `serve()`)."""
        try:
            server = _Server(("127.0.0.1", self._requested_port), _make_handler(self))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {self._requested_port} on 127.0.0.1 is already in use "
                    f"(another `make run`?). Stop that process or choose another port: "
                    f"PORT={self._requested_port + 1} make run"
                ) from None
            raise
        self._server = server

    def serve(self) -> None:
        if self._server is None:
            raise RuntimeError("bind() first")
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway"
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()  # joins the request threads
        if self._thread is not None:
            self._thread.join()
        self._server = None

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- request handling ------------------------------------------------------------------

    def answer(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, host: str
    ) -> tuple[HttpAnswer, Exchange | None]:
        """The HTTP answer, and the exchange to report once it is sent (None: nothing to tell)."""
        path = urlsplit(raw_path).path
        if path == INFO_PATH and method == "GET" and self._info is not None:
            return _json_answer(200, self._info()), None
        if path != RESOURCE or method not in ("GET", "POST"):
            return _json_answer(403, {"message": "Missing Authentication Token"}), None
        received_at = time.monotonic()
        event = build_proxy_event(
            method=method, raw_path=raw_path, headers=headers, body=body, host=host
        )
        started = time.perf_counter()
        error: str | None = None
        try:
            answer = proxy_response_to_http(self._invoke(event))
        except Exception as failure:  # noqa: BLE001 - API Gateway answers 502 for any failure
            error = f"{type(failure).__name__}: {failure}"
            answer = _json_answer(502, {"message": "Internal server error"})
        exchange = Exchange(
            method=method,
            path=path,
            status=answer.status,
            request_body=body,
            response_body=answer.body,
            duration_ms=(time.perf_counter() - started) * 1000,
            received_at=received_at,
            error=error,
        )
        return answer, exchange

    def report(self, exchange: Exchange) -> None:
        if self._on_exchange is not None:
            self._on_exchange(exchange)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins them: nothing is left running
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their threads finish now."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed by the client


def _make_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two sends: with Nagle's algorithm the body waits for the
        # client's delayed ACK of the headers (40 ms per answer on Linux).
        disable_nagle_algorithm = True
        server_version = "local-api-gateway"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def _serve(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._write(_json_answer(411, {"message": "Content-Length required"}))
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self._write(_json_answer(413, {"message": "Request Too Long"}))
                return
            body = self.rfile.read(length) if length else b""
            answer, exchange = gateway.answer(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                self.headers.get("Host") or f"127.0.0.1:{gateway.port}",
            )
            self._write(answer)
            if exchange is not None:
                gateway.report(exchange)

        def _write(self, answer: HttpAnswer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def version_string(self) -> str:
            return self.server_version

        def log_message(self, format: str, *args: Any) -> None:
            return  # the console reports exchanges; no access log on stderr

    return Handler
