"""Logging, request ids and Prometheus metrics.

`RequestContextMiddleware` is a plain ASGI middleware (not BaseHTTPMiddleware) so that it
sees every response, including the 500 it produces itself for an unhandled exception.
"""

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The client's address (after trusted proxies' X-Forwarded-For), for the audit trail.
client_address_var: ContextVar[str | None] = ContextVar("client_address", default=None)
log = logging.getLogger("tandem.http")

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STANDARD_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        record = cleaned(record, escape=False)  # json.dumps escapes control characters
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := request_id_var.get()) is not None:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def formatException(self, ei: Any) -> str:
        return redact_secrets(super().formatException(ei))


class ReadableFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return redact_secrets(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(cleaned(record))
        if (request_id := request_id_var.get()) is not None:
            line = f"{line} [request_id={request_id}]"
        return line


# Control characters (ANSI escapes, newlines, NUL...) in logged values: shown as escapes, so
# text chosen by users cannot forge log lines or drive a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Secrets and the hashes of secrets, should one ever reach a message: argon2 hashes, API keys,
# JWTs, SHA-256 digests (API keys and refresh tokens are stored as those) and the tokens of
# mailed links (an access-log line of /ui/reset?token=..., an e-mail logged without SMTP).
_SECRET = re.compile(
    r"\$argon2(?:id|i|d)\$[^\s'\",)]+"
    r"|tdm_[A-Za-z0-9_-]{16,}"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
    r"|\b[0-9a-f]{64}\b"
    r"|(?<=token=)[A-Za-z0-9_-]{16,}"  # a mailed link's token, in a URL or a logged e-mail
)
REDACTED = "[redacted]"
# Libraries that at DEBUG log statement parameters (hashes), request bodies (agent input) or
# headers: never below WARNING, whatever TANDEM_LOG_LEVEL says.
QUIET_LOGGERS = (
    "sqlalchemy",
    "aiosqlite",
    "psycopg",
    "httpx",
    "httpcore",
    "openai",
    "pydantic_ai",
    "procrastinate",
    "aiosmtplib",
    "asyncio",
    "multipart",
)


def redact_secrets(text: str) -> str:
    return _SECRET.sub(REDACTED, text)


def clean_log_text(text: str) -> str:
    """`text` with secrets redacted and control characters escaped."""
    text = redact_secrets(text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def cleaned(record: logging.LogRecord, *, escape: bool = True) -> logging.LogRecord:
    """A copy of the record, its message formatted once with secrets redacted and (unless
    the output escapes them itself, as JSON does) control characters escaped; string extras
    too. The record itself is shared with every other handler, so it is left as it was."""
    clean = clean_log_text if escape else redact_secrets
    copy = logging.makeLogRecord(vars(record))
    copy.msg = clean(record.getMessage())
    copy.args = None
    for name, value in vars(record).items():
        if name not in _STANDARD_RECORD_FIELDS and isinstance(value, str):
            setattr(copy, name, clean(value))
    return copy


def configure_logging(
    *, json_output: bool, level: str = "INFO", stream: Any = None
) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_output
        else ReadableFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler


class HttpMetrics:
    """Per-app registry, so that several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tandem_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tandem_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = self._incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        client = scope.get("client")
        address_token = client_address_var.set(client[0] if client else None)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            log.exception("Unhandled error on %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            status = 500
            await self._send_internal_error(send, request_id)
        finally:
            route = _route_template(scope)
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            request_id_var.reset(token)
            client_address_var.reset(address_token)

    @staticmethod
    def _incoming_request_id(scope: Scope) -> str | None:
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                candidate: str = value.decode("latin-1")
                return candidate if _CLIENT_REQUEST_ID.match(candidate) else None
        return None

    @staticmethod
    async def _send_internal_error(send: Send, request_id: str) -> None:
        body = json.dumps({"detail": "Internal server error", "request_id": request_id}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
