from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tandem import __version__
from tandem.app import create_app
from tandem.health import READINESS_TIMEOUT_SECONDS
from tandem.settings import Settings
from tests.conftest import running

pytestmark = pytest.mark.anyio


async def test_health_says_healthy_with_the_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "healthy", "version": __version__}


async def test_ready_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_ready_is_503_naming_the_database_when_it_is_unreachable(
    free_tcp_port: int, tmp_path: Path
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"postgresql+psycopg://tandem@127.0.0.1:{free_tcp_port}/nowhere",
    )
    async with running(create_app(settings)) as client:
        response = await client.get("/health/ready")
    body = response.json()
    assert response.status_code == 503, response.text
    assert body["status"] == "not ready"
    assert body["checks"]["database"].startswith("failed: ")
    assert "database" in body["detail"]


async def test_metrics_are_prometheus_text_per_route(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        'tandem_http_requests_total{method="GET",route="/health",status="200"} 1.0' in response.text
    )
    assert "tandem_http_request_duration_seconds_bucket" in response.text


async def test_openapi_and_docs_are_served(app: FastAPI, client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "Tandem"
    assert "/health/ready" in schema["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200, docs.text
    assert "swagger" in docs.text.lower()


async def test_ready_answers_at_once_while_a_long_write_holds_sqlites_write_connection(
    tmp_path: Path,
) -> None:
    """Readiness reads: it does not queue behind the process's writers (one connection on
    SQLite), so a burst of writes never makes a load balancer drop the instance."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ready.db'}",
        worker_enabled=False,
    )
    app = create_app(settings)
    async with running(app) as client:
        engine: AsyncEngine = app.state.engine
        async with engine.connect() as writer:
            await writer.exec_driver_sql("SELECT 1")  # the one write connection, taken
            with anyio.fail_after(READINESS_TIMEOUT_SECONDS / 2):
                response = await client.get("/health/ready")
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}
