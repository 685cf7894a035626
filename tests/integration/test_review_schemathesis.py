"""Schemathesis against the review and content operations of the app's own OpenAPI schema:
no 5xx; status codes, bodies, content types and headers as the schema says. Built like
test_schemathesis.py (see its docstring for why the schema comes from an import-time app)."""

import asyncio
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

REVIEW_PATHS = r"^/api/(hitl|content)(/|$)"
REVIEW_OPERATIONS = {
    "GET /api/hitl/pending",
    "GET /api/hitl/{thread_id}",
    "POST /api/hitl/resume",
    "POST /api/content/create",
    "GET /api/content",
}
ADMIN = {
    "email": "review-fuzz@example.com",
    "password": "a long enough password",
    "full_name": "Fuzz Reviewer",
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
        "seed": 20261125,
        "generation": {"deterministic": True, "with-security-parameters": False},
        "phases": {"stateful": {"enabled": False}},
    }
)
OPENAPI: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG).include(path_regex=REVIEW_PATHS)


async def migrate(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def review_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app on a migrated SQLite file, without an executor (jobs are not under test)."""
    data_dir = tmp_path_factory.mktemp("review-schemathesis")
    database_url = f"sqlite+aiosqlite:///{data_dir / 's.db'}"
    asyncio.run(migrate(database_url))
    return create_app(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=database_url,
            data_dir=data_dir,
            worker_enabled=False,
            rate_limit_register="10000/minute",
        )
    )


async def register_admin(app: FastAPI) -> str:
    async with running(app) as client:
        registered = await client.post("/api/v1/auth/register", json=ADMIN)
    assert registered.status_code == 201, registered.text
    token: str = registered.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def admin_headers(review_app: FastAPI) -> dict[str, str]:
    return {"Authorization": f"Bearer {asyncio.run(register_admin(review_app))}"}


def test_every_review_operation_is_fuzzed() -> None:
    fuzzed = {result.ok().label for result in schema.get_all_operations()}
    assert fuzzed == REVIEW_OPERATIONS


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_review_api_has_no_server_errors_and_answers_as_its_schema_says(
    case: schemathesis.Case, review_app: FastAPI, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(app=review_app, headers=admin_headers, checks=CHECKS)
