"""Issue 13, finding 6: in production the API's description and the metrics are not public."""

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.app import create_app
from tandem.settings import Settings
from tests.conftest import running

pytestmark = pytest.mark.anyio

DESCRIPTION = ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css")


@asynccontextmanager
async def served(tmp_path: Path, **values: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tandem.db'}",
        data_dir=tmp_path,
        jwt_secret=secrets.token_urlsafe(48),
        worker_enabled=False,
        **values,
    )
    async with running(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("path", [pytest.param(p, id=p) for p in (*DESCRIPTION, "/metrics")])
async def test_production_hides_the_description_and_the_metrics(tmp_path: Path, path: str) -> None:
    async with served(tmp_path, env="production") as client:
        response = await client.get(path)
    assert response.status_code == 404, response.text
    assert "tandem_http_requests_total" not in response.text


@pytest.mark.parametrize("path", [pytest.param(p, id=p) for p in DESCRIPTION])
async def test_production_shows_the_description_when_asked(tmp_path: Path, path: str) -> None:
    async with served(tmp_path, env="production", api_docs=True) as client:
        response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.content


@pytest.mark.parametrize("path", [pytest.param(p, id=p) for p in ("/docs", "/openapi.json")])
async def test_development_can_hide_the_description(tmp_path: Path, path: str) -> None:
    async with served(tmp_path, api_docs=False) as client:
        assert (await client.get(path)).status_code == 404


@pytest.mark.parametrize(
    "env", [pytest.param("production", id="production"), pytest.param("development", id="dev")]
)
async def test_a_metrics_token_is_required_when_set(tmp_path: Path, env: str) -> None:
    token = secrets.token_urlsafe(32)
    async with served(tmp_path, env=env, metrics_token=token) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    for refused in (missing, wrong):
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {
            "detail": "Metrics need `Authorization: Bearer <TANDEM_METRICS_TOKEN>`"
        }
    assert right.status_code == 200, right.text
    assert "tandem_http_requests_total" in right.text


async def test_development_keeps_everything_public(tmp_path: Path) -> None:
    async with served(tmp_path) as client:
        for path in (*DESCRIPTION, "/metrics"):
            assert (await client.get(path)).status_code == 200, path
