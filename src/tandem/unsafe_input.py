"""Text no database can hold, and JSON too deep or too large, refused before any route runs.

One check for every route (issue 13, finding 11), so that no field can forget it:
- a NUL character (PostgreSQL refuses it in text; SQLite would store it) or a lone surrogate
  such as "\\ud800" (valid as a JSON escape, but not Unicode: it cannot be encoded for either
  database, nor for the response) anywhere in a JSON body (keys included), a url-encoded
  form, the query string or the path;
- JSON nested more than `MAX_JSON_DEPTH` levels, an integer of more than
  `MAX_INTEGER_DIGITS` digits, and numbers that are not finite (NaN, Infinity, 1e999, which
  Python accepts and PostgreSQL's JSON does not).
Each is a 422 in FastAPI's validation shape, `loc` naming where it was found.

The body is parsed here once more than FastAPI parses it (at most TANDEM_MAX_REQUEST_BYTES,
refused outside this middleware), and then handed on unchanged.
"""

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_DEPTH = 32
MAX_INTEGER_DIGITS = 40  # a 128-bit integer has 39

NUL_MESSAGE = "Contains a NUL character (\\u0000), which text may not hold; remove it"
SURROGATE_MESSAGE = (
    "Contains invalid Unicode (an unpaired surrogate such as \\ud800); send valid UTF-8 text"
)
DEPTH_MESSAGE = f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels"
INTEGER_MESSAGE = f"Integer too long: at most {MAX_INTEGER_DIGITS} digits"
NUMBER_MESSAGE = "Not a finite number: NaN and Infinity are not JSON"

Loc = list[str | int]


class _Refused:
    """Stands in for a number the parser must not build; found by the walk with its place."""

    def __init__(self, message: str, kind: str) -> None:
        self.message = message
        self.kind = kind


_TOO_LONG = _Refused(INTEGER_MESSAGE, "int_too_long")
_NOT_FINITE = _Refused(NUMBER_MESSAGE, "finite_number")


def _parse_int(text: str) -> int | _Refused:
    return _TOO_LONG if len(text.lstrip("-")) > MAX_INTEGER_DIGITS else int(text)


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _NOT_FINITE


def _text_problem(text: str) -> tuple[str, str] | None:
    if "\x00" in text:
        return NUL_MESSAGE, "string_nul"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE, "string_unicode"
    return None


def _error(loc: Loc, message: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": message, "type": kind}


def _shown(key: str) -> str:
    """A key as it may be named in the error (the error itself must be encodable)."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def json_problem(value: Any) -> dict[str, Any] | None:
    """The first problem in a parsed JSON document, as a validation error, or None."""
    pending: list[tuple[Any, Loc]] = [(value, ["body"])]
    while pending:
        item, loc = pending.pop()
        if isinstance(item, str):
            if problem := _text_problem(item):
                return _error(loc, *problem)
        elif isinstance(item, _Refused):
            return _error(loc, item.message, item.kind)
        elif isinstance(item, dict | list):
            if len(loc) > MAX_JSON_DEPTH:  # "body" plus one entry per level above this one
                return _error(loc, DEPTH_MESSAGE, "json_too_deep")
            children: Iterator[tuple[str | int, Any]] = (
                iter(item.items()) if isinstance(item, dict) else enumerate(item)
            )
            for key, child in reversed(list(children)):
                if isinstance(key, str) and (problem := _text_problem(key)):
                    return _error([*loc, _shown(key)], *problem)
                pending.append((child, [*loc, key]))
    return None


def _parse_json(body: bytes) -> tuple[bool, Any]:
    """(True, document), or (False, None) for what is not JSON (FastAPI will say so)."""
    try:
        return True, json.loads(
            body,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=lambda _: _NOT_FINITE,
        )
    except RecursionError:
        return True, _Refused(DEPTH_MESSAGE, "json_too_deep")
    except ValueError:  # JSONDecodeError and UnicodeDecodeError: not ours to report
        return False, None


def _pairs_problem(pairs: list[tuple[str, str]], where: str) -> dict[str, Any] | None:
    for key, value in pairs:
        for text in (key, value):
            if problem := _text_problem(text):
                return _error([where, _shown(key)], *problem)
    return None


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media_type: str = value.decode("latin-1").split(";", 1)[0]
            return media_type.strip().lower()
    return ""


def _is_json(content_type: str) -> bool:
    return content_type in ("", "application/json") or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def body_problem(content_type: str, body: bytes) -> dict[str, Any] | None:
    if not body:
        return None
    if content_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        return _pairs_problem(pairs, "body")
    if _is_json(content_type):
        parsed, document = _parse_json(body)
        return json_problem(document) if parsed else None
    return None


def url_problem(scope: Scope) -> dict[str, Any] | None:
    if "\x00" in scope.get("path", ""):
        return _error(["path"], NUL_MESSAGE, "string_nul")
    query = scope.get("query_string", b"").decode("latin-1")
    return _pairs_problem(parse_qsl(query, keep_blank_values=True), "query") if query else None


class UnsafeInputMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if problem := url_problem(scope):
            await _refuse(send, problem)
            return
        content_type = _content_type(scope)
        if not (_is_json(content_type) or content_type == "application/x-www-form-urlencoded"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if problem := body_problem(content_type, body):
            await _refuse(send, problem)
            return
        whole: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed


async def _refuse(send: Send, error: dict[str, Any]) -> None:
    body = json.dumps({"detail": [error]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
