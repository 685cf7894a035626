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


async def test_serve_believes_x_forwarded_for_only_from_the_configured_proxies(
    start_server: Callable[..., ServerProcess], wait_until: Callable[..., Awaitable[Any]]
) -> None:
    """uvicorn alone believes X-Forwarded-For from 127.0.0.1: a client there could rotate it
    to get a fresh login budget each time. `tandem serve` believes only
    TANDEM_FORWARDED_ALLOW_IPS, which is empty unless set."""

    async def attempts(server: ServerProcess) -> list[int]:
        await wait_until_serving(server, wait_until)
        body = {"email": "ann@example.com", "password": "not the password"}
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            codes = [
                (
                    await client.post(
                        "/api/v1/auth/login", json=body, headers={"X-Forwarded-For": f"192.0.2.{n}"}
                    )
                ).status_code
                for n in range(3)
            ]
        server.stop()
        return codes

    limit = {"TANDEM_RATE_LIMIT_LOGIN": "2/minute"}
    by_default = await attempts(start_server(env=clean_environment(**limit)))
    trusted = clean_environment(**limit, TANDEM_FORWARDED_ALLOW_IPS="127.0.0.1")
    behind_a_proxy = await attempts(start_server(env=trusted))

    assert by_default == [401, 401, 429]  # one client address: 127.0.0.1
    assert behind_a_proxy == [401, 401, 401]  # three clients, as the proxy said
