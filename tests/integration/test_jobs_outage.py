"""A database blip while jobs run (issue 12, finding 8), on a real PostgreSQL: connections
are refused and every open one is terminated for a moment while twelve jobs finish. Each job
completes exactly once, requests meanwhile answer 503 with `Retry-After`, `/health/ready`
says the database is not ready, and no executor task dies with an unretrieved exception."""

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tandem.db import create_engine
from tandem.errors import DATABASE_UNAVAILABLE
from tandem.migrations import upgrade_to_head
from tandem.settings import Settings
from tests.integration.test_jobs_execution import live_app, outcomes

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]
JOBS = 12
JOB_SECONDS = 1.0
OUTAGE_SECONDS = 2.5


@asynccontextmanager
async def database_outage(url: str) -> AsyncIterator[None]:
    """No new connections to the database, and every open one terminated, until the end."""
    name = make_url(url).database
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    async with await psycopg.AsyncConnection.connect(
        admin.render_as_string(hide_password=False), autocommit=True
    ) as connection:
        await connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            yield
        finally:
            await connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def test_jobs_finishing_during_a_database_outage_complete_exactly_once(
    create_postgres_database: Callable[[], str], tmp_path: Path, wait_until: WaitUntil
) -> None:
    url = create_postgres_database()
    engine = create_engine(url)
    await upgrade_to_head(engine)
    await engine.dispose()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        data_dir=tmp_path,
        job_concurrency=JOBS,
        job_org_concurrency=JOBS,
        job_lease_seconds=20,  # the outage is shorter than a lease
        job_poll_seconds=0.05,
        job_retry_base_seconds=0.01,
        outbox_poll_seconds=0.05,
        rate_limit_register="1000/minute",
    )
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    async with live_app(settings, wait_until) as live:
        jobs = [
            await live.submit(payload={"duration_seconds": JOB_SECONDS}, max_attempts=1)
            for _ in range(JOBS)
        ]

        async def all_running() -> bool:
            statuses = [(await live.job(job["id"]))["status"] for job in jobs]
            return statuses == ["running"] * JOBS

        await wait_until(all_running, timeout=10)
        async with database_outage(url):
            listed = await live.client.get("/api/v1/jobs", headers=live.headers)
            assert listed.status_code == 503, listed.text
            assert listed.json() == {"detail": DATABASE_UNAVAILABLE}
            assert listed.headers["Retry-After"] == "5"
            ready = await live.client.get("/health/ready")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["database"].startswith("failed")
            assert ready.headers["Retry-After"] == "5"
            await anyio.sleep(OUTAGE_SECONDS)  # every job's task finishes meanwhile

        finished = [await live.until(job["id"], "succeeded", "dead", timeout=20) for job in jobs]
        assert [job["status"] for job in finished] == ["succeeded"] * JOBS
        assert [outcomes(job) for job in finished] == [["succeeded"]] * JOBS
        assert (await live.client.get("/health/ready")).status_code == 200
    gc.collect()
    assert [c for c in loop_errors if "never retrieved" in str(c.get("message"))] == []
