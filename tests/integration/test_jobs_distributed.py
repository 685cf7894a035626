"""The distributed executor on a real PostgreSQL: deferral in the caller's transaction, a
worker (run in-process here; as real processes in tests/e2e/test_jobs_crash.py) that claims
and runs jobs, the reaper and the stalled-job sweep, graceful shutdown."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from tandem.app import create_app
from tandem.cli import app as cli
from tandem.db import create_engine, create_sessionmaker
from tandem.jobs import lifecycle
from tandem.jobs.distributed import (
    QUEUE,
    TASK_NAME,
    DistributedWorker,
    ProcrastinateDispatch,
    libpq_conninfo,
)
from tandem.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tandem.jobs.service import JobControl, submit_job
from tandem.migrations import upgrade_to_head
from tandem.settings import Settings
from tandem.tasks import task_registry
from tests.conftest import running
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]


@dataclass
class PgDatabase:
    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    def settings(self, tmp_path: Path, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": self.url,
            "data_dir": tmp_path,
            "job_executor": "procrastinate",
            "job_lease_seconds": 2,
            "job_poll_seconds": 0.05,
            "job_retry_base_seconds": 0.01,
        }
        return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]

    async def submit(self, commit: bool = True, **payload: Any) -> uuid.UUID:
        queue = JobControl(task_registry(), ProcrastinateDispatch())
        async with self.sessionmaker() as session, session.begin() as transaction:
            job, _ = await submit_job(
                session, queue, task="echo", payload=payload, organization_id=None
            )
            if not commit:
                await transaction.rollback()
        return job.id

    async def job(self, job_id: uuid.UUID) -> Job:
        async with self.sessionmaker() as session:
            job = await session.get(Job, job_id)
        assert job is not None
        return job

    async def attempts(self, job_id: uuid.UUID) -> list[JobAttempt]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.number)
            )
            return list(rows)

    async def procrastinate_jobs(self, job_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
        """procrastinate's rows, oldest first (for one of our jobs, or all)."""
        query = "SELECT id, queue_name, task_name, args, status::text AS status, scheduled_at "
        query += "FROM procrastinate.procrastinate_jobs"
        params: dict[str, str] = {}
        if job_id is not None:
            query += " WHERE args->>'job_id' = :job_id"
            params["job_id"] = str(job_id)
        async with self.engine.connect() as connection:
            rows = await connection.execute(text(query + " ORDER BY id"), params)
            return [dict(row._mapping) for row in rows]


@pytest.fixture
def pg_url(create_postgres_database: Callable[[], str]) -> str:
    return create_postgres_database()


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PgDatabase]:
    """A fresh migrated database per test: procrastinate's queue is part of what is tested."""
    engine = create_engine(pg_url)
    await upgrade_to_head(engine)
    yield PgDatabase(pg_url, engine, create_sessionmaker(engine))
    await engine.dispose()


@asynccontextmanager
async def running_worker(
    pg: PgDatabase, settings: Settings, grace_seconds: float = 1.0, **options: Any
) -> AsyncIterator[DistributedWorker]:
    worker = DistributedWorker(settings, pg.sessionmaker, task_registry(), concurrency=4, **options)
    task = asyncio.create_task(worker.run(grace_seconds=grace_seconds))
    await asyncio.wait_for(worker.started.wait(), timeout=10)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=15)


def test_libpq_conninfo_drops_the_driver_and_keeps_the_credentials() -> None:
    url = "postgresql+psycopg://app:s3cret@db.internal:5433/tandem"
    assert libpq_conninfo(url) == "postgresql://app:s3cret@db.internal:5433/tandem"
    with pytest.raises(ValueError, match="PostgreSQL"):
        libpq_conninfo("sqlite+aiosqlite:///./tandem.db")


def test_procrastinate_on_sqlite_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="procrastinate needs PostgreSQL"):
        Settings(_env_file=None, job_executor="procrastinate")  # type: ignore[call-arg]


def test_tandem_worker_on_sqlite_exits_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1
    assert "`tandem worker` needs PostgreSQL" in result.output


def test_tandem_worker_refuses_an_outdated_schema(
    monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", pg_url)
    monkeypatch.setenv("TANDEM_JOB_EXECUTOR", "procrastinate")
    result = CliRunner().invoke(cli, ["worker", "--concurrency", "2"])
    assert result.exit_code == 1
    assert "tandem migrate" in result.output


async def test_deferral_happens_in_the_callers_transaction(pg: PgDatabase) -> None:
    rolled_back = await pg.submit(commit=False)
    assert await pg.procrastinate_jobs() == [], "a rolled-back submit defers nothing"
    async with pg.sessionmaker() as session:
        assert await session.get(Job, rolled_back) is None

    committed = await pg.submit(commit=True)
    deferred = await pg.procrastinate_jobs()
    assert [(row["queue_name"], row["task_name"], row["args"]) for row in deferred] == [
        (QUEUE, TASK_NAME, {"job_id": str(committed)})
    ]
    assert deferred[0]["status"] == "todo"
    assert deferred[0]["scheduled_at"] is None, "a job due now is not scheduled"


async def test_a_worker_claims_and_runs_a_submitted_job(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    async with running_worker(pg, pg.settings(tmp_path)) as worker:
        job_id = await pg.submit(greeting="hello")

        async def finished() -> Job | None:
            job = await pg.job(job_id)
            return job if job.status is JobStatus.succeeded else None

        job = await wait_until(finished, timeout=15)
    assert job.result == {"greeting": "hello"}
    attempts = await pg.attempts(job_id)
    assert [(a.number, a.outcome, a.worker) for a in attempts] == [
        (1, AttemptOutcome.succeeded, worker.name)
    ]
    assert [row["status"] for row in await pg.procrastinate_jobs(job_id)] == ["succeeded"]


async def test_the_reaper_defers_an_expired_lease_again_and_a_worker_finishes_the_job(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    job_id = await pg.submit(n=1)
    # A worker claims it and dies: its lease runs out at once.
    claims = await lifecycle.claim_due(pg.sessionmaker, "worker:dead", limit=1, lease=0)
    assert [claim.job_id for claim in claims] == [job_id]

    reaped = await lifecycle.reap_expired(pg.sessionmaker, 0.01, ProcrastinateDispatch())
    assert reaped == 1
    job = await pg.job(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.pending, 1, None)
    deferred = await pg.procrastinate_jobs(job_id)
    assert len(deferred) == 2, "the reaper deferred the job again"

    async with running_worker(pg, pg.settings(tmp_path)) as worker:

        async def finished() -> Job | None:
            job = await pg.job(job_id)
            return job if job.status is JobStatus.succeeded else None

        await wait_until(finished, timeout=15)

        async def both_handled() -> list[str] | None:
            statuses = [row["status"] for row in await pg.procrastinate_jobs(job_id)]
            return statuses if "todo" not in statuses and "doing" not in statuses else None

        await wait_until(both_handled, timeout=10)
    attempts = await pg.attempts(job_id)
    # The stale procrastinate job (deferred before the crash) found nothing to claim.
    assert [(a.number, a.outcome, a.worker) for a in attempts] == [
        (1, AttemptOutcome.lease_expired, "worker:dead"),
        (2, AttemptOutcome.succeeded, worker.name),
    ]


async def test_a_worker_reaps_expired_leases_itself(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    job_id = await pg.submit()
    # Claimed by a worker that died: its procrastinate job is now a no-op for anyone else.
    claims = await lifecycle.claim_due(pg.sessionmaker, "worker:dead", limit=1, lease=0.5)
    assert [claim.job_id for claim in claims] == [job_id]
    async with running_worker(pg, pg.settings(tmp_path, job_lease_seconds=1)):

        async def finished() -> Job | None:
            job = await pg.job(job_id)
            return job if job.status is JobStatus.succeeded else None

        await wait_until(finished, timeout=15)
    outcomes = [a.outcome for a in await pg.attempts(job_id)]
    assert outcomes == [AttemptOutcome.lease_expired, AttemptOutcome.succeeded]


async def test_a_job_fetched_by_a_worker_that_died_before_claiming_is_swept_back(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    job_id = await pg.submit()
    settings = pg.settings(tmp_path)
    sweeper = DistributedWorker(settings, pg.sessionmaker, task_registry())
    async with sweeper.app.open_async():
        manager = sweeper.app.job_manager
        dead_worker = await manager.register_worker()
        fetched = await manager.fetch_job(queues=[QUEUE], worker_id=dead_worker)
        assert fetched is not None
        assert fetched.task_kwargs == {"job_id": str(job_id)}
        assert await sweeper.sweep_stalled() == 0, "a live worker's job is not stalled"
        async with pg.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE procrastinate.procrastinate_workers "
                    "SET last_heartbeat = now() - interval '1 hour' WHERE id = :id"
                ),
                {"id": dead_worker},
            )
        assert await sweeper.sweep_stalled() == 1
    assert [row["status"] for row in await pg.procrastinate_jobs(job_id)] == ["todo"]

    async with running_worker(pg, settings):

        async def finished() -> Job | None:
            job = await pg.job(job_id)
            return job if job.status is JobStatus.succeeded else None

        await wait_until(finished, timeout=15)
    assert [a.outcome for a in await pg.attempts(job_id)] == [AttemptOutcome.succeeded]


async def test_shutdown_hands_a_running_job_back_and_defers_it_again(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    job_id = await pg.submit(duration_seconds=30)
    async with running_worker(pg, pg.settings(tmp_path), grace_seconds=0.2):

        async def started() -> bool:
            return (await pg.job(job_id)).status is JobStatus.running

        await wait_until(started, timeout=15)
    job = await pg.job(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.pending, 0, None)
    assert [a.outcome for a in await pg.attempts(job_id)] == [AttemptOutcome.handed_back]
    statuses = [row["status"] for row in await pg.procrastinate_jobs(job_id)]
    assert statuses == ["succeeded", "todo"], "handed back and deferred for another worker"


async def test_a_worker_stops_a_job_whose_cancellation_was_requested(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    job_id = await pg.submit(duration_seconds=30)
    async with running_worker(pg, pg.settings(tmp_path, job_lease_seconds=1.5)):

        async def started() -> bool:
            return (await pg.job(job_id)).status is JobStatus.running

        await wait_until(started, timeout=15)
        async with pg.sessionmaker() as session, session.begin():
            await session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))

        async def cancelled() -> Job | None:
            job = await pg.job(job_id)
            return job if job.status is JobStatus.cancelled else None

        job = await wait_until(cancelled, timeout=10)
    assert job.finished_at is not None
    assert [a.outcome for a in await pg.attempts(job_id)] == [AttemptOutcome.cancelled]


async def test_procrastinate_tables_stay_out_of_the_default_schema(pg: PgDatabase) -> None:
    async with pg.engine.connect() as connection:
        public = await connection.scalar(
            text(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name LIKE 'procrastinate%'"
            )
        )
        ours = await connection.scalar(select(func.count()).select_from(Job))
    assert (public, ours) == (0, 0)


async def test_a_pending_job_without_a_procrastinate_job_is_deferred_again_and_runs(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """A re-deferral lost in a database outage leaves a pending job nobody will fetch."""
    orphan = await pg.submit()
    fresh = await pg.submit()
    async with pg.engine.begin() as connection:
        await connection.execute(text("DELETE FROM procrastinate.procrastinate_jobs"))
        await connection.execute(
            update(Job)
            .where(Job.id == orphan)
            .values(next_run_at=func.now() - text("interval '1 minute'"))
        )
    settings = pg.settings(tmp_path)
    sweeper = DistributedWorker(settings, pg.sessionmaker, task_registry())
    assert await sweeper.sweep_orphans(older_than_seconds=30) == 1, "only the overdue one"
    assert [row["status"] for row in await pg.procrastinate_jobs(orphan)] == ["todo"]
    assert await pg.procrastinate_jobs(fresh) == []
    assert await sweeper.sweep_orphans(older_than_seconds=30) == 0, "already waiting"

    async with running_worker(pg, settings):

        async def finished() -> Job | None:
            job = await pg.job(orphan)
            return job if job.status is JobStatus.succeeded else None

        await wait_until(finished, timeout=15)
    assert [a.outcome for a in await pg.attempts(orphan)] == [AttemptOutcome.succeeded]


async def test_one_procrastinate_job_fills_the_workers_free_slots_with_due_jobs(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """Claims are batched: the worker told about one job takes other due jobs with it, and
    their own procrastinate jobs then find nothing to do."""
    told = await pg.submit()
    others = [await pg.submit(), await pg.submit()]
    async with pg.engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM procrastinate.procrastinate_jobs WHERE args->>'job_id' != :told"),
            {"told": str(told)},
        )
    async with running_worker(pg, pg.settings(tmp_path)):

        async def all_finished() -> list[Job] | None:
            jobs = [await pg.job(job_id) for job_id in (told, *others)]
            return jobs if all(j.status is JobStatus.succeeded for j in jobs) else None

        # Well before the orphan sweep's first look (15 s): the batch claim ran them.
        await wait_until(all_finished, timeout=10)
    for job_id in (told, *others):
        assert [a.outcome for a in await pg.attempts(job_id)] == [AttemptOutcome.succeeded]


# --- jobs that services submit deep inside a transaction ------------------------------------
# A webhook delivery is submitted by `webhooks.emit`, inside whatever transaction changed
# something: a request's, or a job's on the worker. It is deferred in that transaction like
# a job submitted through the jobs API, so a worker starts it at once. The workers' sweeps
# cannot be what finds it: they are set to run once an hour, and the orphan sweep only takes
# jobs due for 30 seconds.
NO_SWEEPS = {"sweep_interval_seconds": 3600.0}


@asynccontextmanager
async def api_with_webhook(
    pg: PgDatabase, settings: Settings, events: list[str]
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], dict[str, Any], Receiver]]:
    """The API (no executor: jobs go to `tandem worker`s), signed in as an organization's
    admin whose webhook sends `events` to a real receiver on 127.0.0.1."""
    async with webhook_receiver() as receiver, running(create_app(settings)) as client:
        body = {"email": "ops@example.com", "password": "a long enough password", "full_name": "O"}
        registered = await client.post("/api/v1/auth/register", json=body)
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        hook = {"url": receiver.url, "events": events}
        webhook = await client.post("/api/v1/webhooks", json=hook, headers=headers)
        assert webhook.status_code == 201, webhook.text
        yield client, headers, webhook.json(), receiver


async def test_a_delivery_submitted_inside_a_request_starts_on_a_worker_at_once(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    settings = pg.settings(tmp_path, webhook_allow_private=True)
    async with (
        running_worker(pg, settings, **NO_SWEEPS),
        api_with_webhook(pg, settings, ["job.dead"]) as (client, headers, webhook, receiver),
    ):
        ping = await client.post(f"/api/v1/webhooks/{webhook['id']}/test", headers=headers)
        assert ping.status_code == 202, ping.text
        await wait_until(lambda: receiver.received, timeout=10)
    assert json.loads(receiver.received[0].body)["type"] == "ping"


async def test_a_delivery_submitted_inside_a_workers_job_starts_at_once(
    pg: PgDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """`job.succeeded` is emitted where the worker records the job's success."""
    settings = pg.settings(tmp_path, webhook_allow_private=True)
    async with (
        running_worker(pg, settings, **NO_SWEEPS),
        api_with_webhook(pg, settings, ["job.succeeded"]) as (client, headers, _, receiver),
    ):
        job = await client.post(
            "/api/v1/jobs", json={"task": "echo", "payload": {"n": 1}}, headers=headers
        )
        assert job.status_code == 202, job.text
        await wait_until(lambda: receiver.received, timeout=10)
    announced = json.loads(receiver.received[0].body)
    assert announced["type"] == "job.succeeded"
    assert announced["data"]["job_id"] == job.json()["id"]
