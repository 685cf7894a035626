"""`tandem serve` as an operator runs it: a real process, spoken to over HTTP."""

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem import __version__
from tests.e2e.conftest import (
    UNLIMITED_REGISTRATION,
    ServerProcess,
    clean_environment,
    wait_until_serving,
)

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
    assert ready.status_code == 200, ready.text
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


def _children(pid: int) -> list[int]:
    """The processes a process started (Linux)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def _register(client: httpx.AsyncClient) -> dict[str, str]:
    account = {"email": "ann@example.com", "password": "a long enough password", "full_name": "A"}
    registered = await client.post("/api/v1/auth/register", json=account)
    assert registered.status_code == 201, registered.text
    return {"Authorization": f"Bearer {registered.json()['access_token']}"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_serve_with_two_processes_serves_one_port_and_runs_jobs(
    backend: str,
    start_server: Callable[..., ServerProcess],
    wait_until: Callable[..., Awaitable[Any]],
    redis_url: str,
    request: pytest.FixtureRequest,
) -> None:
    """`--workers 2`: two processes behind one port; a login made through one is honoured by
    the other; a job is run (on SQLite by the one process that holds the executor lock)."""
    env = clean_environment(
        TANDEM_REDIS_URL=redis_url, TANDEM_JOB_POLL_SECONDS="0.1", **UNLIMITED_REGISTRATION
    )
    args = ["--workers", "2"]
    if backend == "postgresql":
        env["TANDEM_DATABASE_URL"] = request.getfixturevalue("create_postgres_database")()
        args.append("--migrate")
    server = start_server(*args, env=env)
    await wait_until_serving(server, wait_until)
    await wait_until(lambda: len(_children(server.process.pid)) >= 2, timeout=60)
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        headers = await _register(client)
        # New connections are spread over the processes: each must know the login.
        for _ in range(20):
            async with httpx.AsyncClient(base_url=server.base_url) as fresh:
                me = await fresh.get("/api/v1/users/me", headers=headers)
                assert me.status_code == 200, me.text
        job = await client.post("/api/v1/jobs", json={"task": "echo"}, headers=headers)
        assert job.status_code == 202, job.text

        async def job_succeeded() -> bool:
            path = f"/api/v1/jobs/{job.json()['id']}"
            return (await client.get(path, headers=headers)).json()["status"] == "succeeded"

        await wait_until(job_succeeded, timeout=30)

        # Writers in both processes at once: on SQLite they meet at the one write lock, and
        # the process that finds it taken waits for it asleep on its loop. Every one lands.
        async def submit(n: int) -> int:
            async with httpx.AsyncClient(base_url=server.base_url) as fresh:
                body = {"task": "echo", "payload": {"n": n}}
                return (await fresh.post("/api/v1/jobs", json=body, headers=headers)).status_code

        assert await asyncio.gather(*(submit(n) for n in range(40))) == [202] * 40

        async def all_succeeded() -> bool:
            page = await client.get("/api/v1/jobs?status=succeeded&limit=1", headers=headers)
            return bool(page.json()["count"] == 41)

        await wait_until(all_succeeded, timeout=60)
    assert server.stop() in (0, -signal.SIGTERM)
    output = server.output()
    if backend == "sqlite":
        assert output.count(" runs jobs") == 1, output
        assert output.count(" does not run jobs") == 1, output


async def test_serve_with_two_processes_needs_redis_for_its_rate_limits(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server("--workers", "2")
    assert server.process.wait(timeout=60) == 1
    assert "TANDEM_REDIS_URL" in server.output()
