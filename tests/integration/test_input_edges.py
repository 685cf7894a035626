"""Issue 13, finding 11: text the databases cannot hold, and JSON too deep or too large.

One check in front of every route: a lone surrogate or a NUL anywhere in a JSON body, a form
or a query string is a 422 naming where it was, on SQLite and PostgreSQL alike.
"""

import re
import uuid
from typing import Any

import httpx
import pytest

from tandem.app import create_app
from tandem.identity.models import User
from tandem.settings import Settings
from tandem.unsafe_input import MAX_JSON_DEPTH
from tests.conftest import LoginAs

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
LONE_SURROGATE = '"\\ud800"'  # as JSON text: the escape, not the (unencodable) character
NUL = '"a\\u0000b"'


def _string_field(schema: dict[str, Any], operation: dict[str, Any]) -> str:
    """A string property of the operation's JSON body, or `note` when it has none."""
    content = operation.get("requestBody", {}).get("content", {})
    body = content.get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    for name, prop in body.get("properties", {}).items():
        types = [prop.get("type")] + [p.get("type") for p in prop.get("anyOf", [])]
        if "string" in types and "format" not in prop and "enum" not in prop:
            return str(name)
    return "note"


def _writes() -> list[object]:
    schema = create_app(Settings(jwt_secret="x" * 64)).openapi()
    return [
        pytest.param(method.upper(), path, _string_field(schema, op), id=f"{method} {path}")
        for path, item in sorted(schema["paths"].items())
        for method, op in item.items()
        if method in {"post", "put", "patch"}
    ]


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def _assert_refused(response: httpx.Response, loc: list[object], words: str) -> None:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc
    assert words in error["msg"]


@pytest.mark.parametrize(("method", "path", "field"), _writes())
@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(LONE_SURROGATE, "invalid Unicode", id="surrogate"),
        pytest.param(NUL, "NUL character", id="nul"),
    ],
)
async def test_every_write_refuses_text_no_database_holds(
    client: httpx.AsyncClient, method: str, path: str, field: str, text: str, words: str
) -> None:
    body = f'{{"{field}": {text}}}'
    response = await client.request(method, _url(path), content=body, headers=JSON)
    _assert_refused(response, ["body", field], words)


@pytest.mark.parametrize(
    "text", [pytest.param(LONE_SURROGATE, id="surrogate"), pytest.param(NUL, id="nul")]
)
async def test_a_job_payload_with_such_text_is_refused_by_name(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, text: str
) -> None:
    body = f'{{"task": "echo", "payload": {{"notes": [{{"text": {text}}}]}}}}'
    response = await client.post(
        "/api/v1/jobs", content=body, headers=JSON | await login_as(member)
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "payload", "notes", 0, "text"]


async def test_a_key_holding_nul_is_named_too(client: httpx.AsyncClient) -> None:
    body = '{"task": "echo", "payload": {"a\\u0000": 1}}'
    response = await client.post("/api/v1/jobs", content=body, headers=JSON)
    _assert_refused(response, ["body", "payload", "a\\u0000"], "NUL character")


async def test_a_project_name_with_nul_is_refused_on_both_databases(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    body = '{"name": "Acme\\u0000"}'
    response = await client.post("/api/v1/projects", content=body, headers=JSON | headers)
    _assert_refused(response, ["body", "name"], "NUL character")
    listed = await client.get("/api/v1/projects", headers=headers)
    assert listed.json()["count"] == 0


async def test_nul_in_a_query_string_is_refused(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    response = await client.get("/api/v1/jobs?task=echo%00", headers=await login_as(member))
    _assert_refused(response, ["query", "task"], "NUL character")


async def test_nul_in_a_login_form_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", data={"username": "a\x00@example.com", "password": "x" * 12}
    )
    _assert_refused(response, ["body", "username"], "NUL character")


@pytest.mark.parametrize(
    ("payload", "loc", "words"),
    [
        pytest.param("[" * 10_000 + "]" * 10_000, ["body"], "nested too deeply", id="deep"),
        pytest.param(
            "[" * 40 + "]" * 40,
            ["body", "payload", *[0] * (MAX_JSON_DEPTH - 1)],
            "nested too deeply",
            id="deep-40",
        ),
        pytest.param('{"n": ' + "9" * 5000 + "}", ["body", "payload", "n"], "digits", id="big-int"),
        pytest.param('{"n": NaN}', ["body", "payload", "n"], "finite number", id="nan"),
        pytest.param('{"n": 1e999}', ["body", "payload", "n"], "finite number", id="infinite"),
    ],
)
async def test_json_too_deep_or_too_large_is_422(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    member: User,
    payload: str,
    loc: list[object],
    words: str,
) -> None:
    body = f'{{"task": "echo", "payload": {payload}}}'
    response = await client.post(
        "/api/v1/jobs", content=body, headers=JSON | await login_as(member)
    )
    _assert_refused(response, loc, words)


async def test_ordinary_unicode_still_passes(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    body = '{"name": "Caf\\u00e9 \\ud83d\\ude00 \u65e5\u672c"}'
    response = await client.post(
        "/api/v1/projects", content=body.encode(), headers=JSON | await login_as(member)
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Caf\u00e9 \U0001f600 \u65e5\u672c"
