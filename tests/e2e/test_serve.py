"""`tandem serve` as an operator runs it: a real process, spoken to over HTTP."""

import signal
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tandem import __version__
from tests.e2e.conftest import ServerProcess, clean_environment, wait_until_serving

pytestmark = pytest.mark.anyio


async def test_serve_with_no_configuration_is_healthy_and_ready_on_sqlite(
    start_server: Callable[..., ServerProcess], wait_until: Callable[..., Awaitable[Any]]
) -> None:
    server = start_server()
    await wait_until_serving(server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        health = await client.get("/health", headers={"X-Request-ID": "e2e-1"})
        ready = await client.get("/health/ready")
    assert health.json() == {"status": "healthy", "version": __version__}
    assert health.headers["x-request-id"] == "e2e-1"
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}
    assert (server.workdir / "tandem.db").exists(), "the default database is ./tandem.db"
    # uvicorn re-raises the SIGTERM after a graceful shutdown, so the exit status is -15.
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.output()


async def test_serve_migrates_postgres_only_when_asked(
    start_server: Callable[..., ServerProcess],
    wait_until: Callable[..., Awaitable[Any]],
    create_postgres_database: Callable[[], str],
) -> None:
    env = clean_environment(TANDEM_DATABASE_URL=create_postgres_database())
    refused = start_server(env=env)
    assert refused.process.wait(timeout=60) == 1
    assert "tandem migrate" in refused.output()

    server = start_server("--migrate", env=env)
    await wait_until_serving(server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        ready = await client.get("/health/ready")
    assert ready.json()["checks"] == {"database": "ok"}
