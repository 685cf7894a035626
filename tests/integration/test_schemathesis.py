"""Schemathesis against the app's own OpenAPI schema: the identity, jobs, agents, review,
content and scheduling APIs and /health.

The app runs on a migrated SQLite file of its own (module fixture); schemathesis calls it
over ASGI, in its own event loop, starting and stopping the lifespan around each test. Every
case carries an admin's bearer token so that the fuzzing reaches the handlers, not only the
authentication.

`schemathesis.pytest.from_fixture` cannot be used: with pytest 9 it fails on
`Function._nodeid`. So the schema is taken from an app built at import time (building the app
touches neither the database nor the data directory), the calls go to the fixture's app, and
one test checks that the app serves exactly that schema at /openapi.json.

Checks: no 5xx; status codes, response bodies, content types and headers as the schema says.
What the first fuzzing runs found is kept below as explicit reproductions (handler-raised 422s
in FastAPI's validation shape, every error status documented, the password rule stated in the
schema). `ignored_auth` needs the schema to carry the app, which it cannot here.
"""

import asyncio
import uuid
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tandem.app import create_app
from tandem.db import create_engine
from tandem.migrations import upgrade_to_head
from tandem.settings import Settings
from tests.conftest import running

pytestmark = pytest.mark.slow

FUZZED_PATHS = (
    r"^/(health$"
    r"|api/v1/(auth|users|organizations|projects|api-keys|jobs|agents)(/|$)"
    r"|api/(hitl|content)(/|$)"
    r"|api/v1/(people|blocks|rotations|schedules|swaps)(/|$))"
)
ADMIN = {
    "email": "fuzz-admin@example.com",
    "password": "a long enough password",
    "full_name": "Fuzz Admin",
}
IDENTITY_OPERATIONS = {
    "GET /health",
    "POST /api/v1/auth/register",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/refresh",
    "POST /api/v1/auth/logout",
    "GET /api/v1/users/me",
    "POST /api/v1/users",
    "GET /api/v1/users",
    "GET /api/v1/users/{user_id}",
    "PATCH /api/v1/users/{user_id}",
    "DELETE /api/v1/users/{user_id}",
    "GET /api/v1/organizations/current",
    "POST /api/v1/projects",
    "GET /api/v1/projects",
    "GET /api/v1/projects/{project_id}",
    "PATCH /api/v1/projects/{project_id}",
    "DELETE /api/v1/projects/{project_id}",
    "POST /api/v1/api-keys",
    "GET /api/v1/api-keys",
    "DELETE /api/v1/api-keys/{key_id}",
}
REVIEW_OPERATIONS = {
    "GET /api/hitl/pending",
    "GET /api/hitl/{thread_id}",
    "POST /api/hitl/resume",
    "POST /api/content/create",
    "GET /api/content",
}
SCHEDULING_OPERATIONS = {
    "POST /api/v1/people",
    "GET /api/v1/people",
    "POST /api/v1/blocks/generate",
    "GET /api/v1/blocks",
    "POST /api/v1/rotations",
    "POST /api/v1/schedules",
    "POST /api/v1/schedules/{schedule_id}/generate",
    "GET /api/v1/schedules/{schedule_id}/validation",
    "POST /api/v1/swaps",
}
JOBS_AND_AGENTS_OPERATIONS = {
    "POST /api/v1/jobs",
    "GET /api/v1/jobs",
    "GET /api/v1/jobs/tasks",
    "GET /api/v1/jobs/{job_id}",
    "POST /api/v1/jobs/{job_id}/retry",
    "POST /api/v1/jobs/{job_id}/cancel",
    "GET /api/v1/agents",
    "GET /api/v1/agents/{agent_id}",
    "POST /api/v1/agents/run",
    "GET /api/v1/agents/runs",
    "GET /api/v1/agents/runs/{run_id}",
}
CHECKS: list[schemathesis.CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20240611,
        "generation": {"deterministic": True, "with-security-parameters": False},
        "phases": {"stateful": {"enabled": False}},
    }
)
OPENAPI: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG).include(path_regex=FUZZED_PATHS)


# --- the app under test --------------------------------------------------------------------


async def migrate(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def identity_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app on a migrated SQLite file; limits high enough never to answer 429; no executor
    (jobs are not under test: the jobs submitted stay pending, and a synchronous agent run
    answers 202 after a short wait)."""
    data_dir = tmp_path_factory.mktemp("schemathesis")
    database_url = f"sqlite+aiosqlite:///{data_dir / 's.db'}"
    asyncio.run(migrate(database_url))
    return create_app(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=database_url,
            data_dir=data_dir,
            rate_limit_login="10000/minute",
            rate_limit_login_address="10000/minute",
            rate_limit_login_failures="10000/minute",
            rate_limit_register="10000/minute",
            rate_limit_register_global="10000/minute",
            rate_limit_agents="10000/minute",
            rate_limit_agents_organization="10000/minute",
            rate_limit_content="100000/minute",
            rate_limit_jobs="10000/minute",
            rate_limit_api_keys="10000/minute",
            agent_sync_timeout_seconds=0.2,
            worker_enabled=False,
        )
    )


async def register_admin(app: FastAPI) -> tuple[str, dict[str, Any]]:
    async with running(app) as client:
        registered = await client.post("/api/v1/auth/register", json=ADMIN)
        served = await client.get("/openapi.json")
    assert registered.status_code == 201, registered.text
    assert registered.json()["user"]["role"] == "admin"
    token: str = registered.json()["access_token"]
    return token, served.json()


@pytest.fixture(scope="module")
def registered_admin(identity_app: FastAPI) -> tuple[str, dict[str, Any]]:
    """An admin's access token, and the OpenAPI document the app served meanwhile."""
    return asyncio.run(register_admin(identity_app))


@pytest.fixture(scope="module")
def admin_headers(registered_admin: tuple[str, dict[str, Any]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {registered_admin[0]}"}


def test_the_fuzzed_schema_is_the_one_the_app_serves(
    registered_admin: tuple[str, dict[str, Any]],
) -> None:
    assert registered_admin[1] == OPENAPI
    fuzzed = {result.ok().label for result in schema.get_all_operations()}
    assert fuzzed >= IDENTITY_OPERATIONS, "every identity operation of API.md is fuzzed"
    assert fuzzed >= REVIEW_OPERATIONS, "every review and content operation is fuzzed"
    assert fuzzed >= SCHEDULING_OPERATIONS, "the scheduling operations are fuzzed"
    assert fuzzed >= JOBS_AND_AGENTS_OPERATIONS, "every jobs and agents operation is fuzzed"
    assert not {label.split()[1] for label in fuzzed} & {"/metrics", "/health/ready"}


# --- fuzzing -------------------------------------------------------------------------------


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_has_no_server_errors_and_answers_as_its_schema_says(
    case: schemathesis.Case, identity_app: FastAPI, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(app=identity_app, headers=admin_headers, checks=CHECKS)


# --- what schemathesis found: explicit reproductions ----------------------------------------


def validated(
    app: FastAPI,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    check: schemathesis.CheckFunction = response_schema_conformance,
    **case_data: Any,
) -> schemathesis.Response:
    """Sends one hand-written case and validates the answer against the schema with `check`."""
    case = schema[path][method].Case(**case_data)
    response = case.call(app=app, headers=headers)
    case.validate_response(response, checks=[not_a_server_error, check])
    return response


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/api/v1/projects", {"name": "!!!"}, id="project-name-without-letters"),
        pytest.param(
            "/api/v1/api-keys",
            {"name": "old", "scopes": ["projects:read"], "expires_at": "2000-01-01T00:00:00Z"},
            id="api-key-expiring-in-the-past",
        ),
        pytest.param(
            "/api/v1/api-keys",
            {"name": "naive", "scopes": ["projects:read"], "expires_at": "2999-01-01T00:00:00"},
            id="api-key-expiry-without-timezone",
        ),
    ],
)
def test_handler_raised_422s_have_the_validation_error_shape(
    identity_app: FastAPI, admin_headers: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    response = validated(identity_app, "POST", path, headers=admin_headers, body=body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("method", "path", "authenticated", "case_data", "status"),
    [
        pytest.param("GET", "/api/v1/users/me", False, {}, 401, id="no-credentials-401"),
        pytest.param(
            "GET",
            "/api/v1/projects/{project_id}",
            True,
            {"path_parameters": {"project_id": str(uuid.UUID(int=7))}},
            404,
            id="unknown-project-404",
        ),
        pytest.param(
            "POST",
            "/api/v1/auth/login",
            False,
            {"body": {"email": ADMIN["email"], "password": "not the password"}},
            401,
            id="wrong-password-401",
        ),
        pytest.param(
            "POST",
            "/api/v1/auth/login",
            False,
            {"body": {"email": ADMIN["email"]}},
            422,
            id="login-without-password-422",
        ),
        pytest.param(
            "POST",
            "/api/v1/auth/refresh",
            False,
            {"body": {"refresh_token": "not-a-refresh-token"}},
            401,
            id="unknown-refresh-token-401",
        ),
        pytest.param(
            "POST", "/api/v1/auth/register", False, {"body": ADMIN}, 409, id="taken-email-409"
        ),
    ],
)
def test_every_status_the_api_returns_is_documented(
    identity_app: FastAPI,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    authenticated: bool,
    case_data: dict[str, Any],
    status: int,
) -> None:
    response = validated(
        identity_app,
        method,
        path,
        headers=admin_headers if authenticated else None,
        check=status_code_conformance,
        media_type="application/json" if "body" in case_data else None,
        **case_data,
    )
    assert response.status_code == status


@pytest.mark.parametrize("model", [pytest.param("RegisterIn"), pytest.param("UserCreateIn")])
def test_the_schema_states_the_password_rule(model: str) -> None:
    password = OPENAPI["components"]["schemas"][model]["properties"]["password"]
    assert (password.get("minLength"), password.get("maxLength")) == (12, 1024)
