"""The distributed executor: `tandem worker` processes on PostgreSQL, fed by procrastinate.

Our `jobs` table stays the source of truth; procrastinate only says *which* job to look at.

- A job that becomes runnable gets a procrastinate job (`tandem.run_job`, args `{job_id}`)
  deferred by `ProcrastinateDispatch` in the same transaction, on the caller's connection,
  by calling procrastinate's own SQL function: a rolled-back request defers nothing, and
  workers are woken (LISTEN/NOTIFY) when it commits.
- A worker's procrastinate task is a trigger: it makes the worker's `Executor` (the one
  `tandem serve` runs, without its claim loop) claim due jobs for its free slots, shared
  between organizations like every claim (`lifecycle.claim_due`), and waits for its own job
  if that was among them. Otherwise, while its job is still due (its organization is at its
  cap), it looks again whenever a job of this worker finishes. The heartbeat, cancellation,
  hand-back at shutdown and the lease reaper are the executor's own.
- procrastinate's retries are off: retries, backoff and `dead` are decided by
  `tandem.jobs.lifecycle`. A procrastinate job that finds our job not claimable (already
  running elsewhere, finished, cancelled) does nothing, so a stale or duplicate procrastinate
  job is harmless; that is what lets the reaper re-defer and the stalled-job sweep retry
  without ever running a job twice.
- Killed workers: our reaper (in every worker) fails the attempt whose lease expired and
  re-defers the job; the stalled-job sweep puts procrastinate jobs of workers that stopped
  heart-beating back to `todo`, so a job fetched but never claimed is not lost either.
- Orphans: a pending job that is due with no procrastinate job waiting for it (its
  re-deferral failed during a database outage, it was submitted while the embedded
  executor was configured, or by a session with no dispatch bound) is deferred again by the
  orphan sweep.

procrastinate's tables live in the `procrastinate` schema (migration 0005); its connections
use `search_path=procrastinate`.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import procrastinate
from procrastinate.job_context import JobContext
from procrastinate.worker import Worker as ProcrastinateWorker
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.db import READ_ONLY, utcnow
from tandem.jobs.dispatch import bind_dispatch
from tandem.jobs.executor import Executor
from tandem.jobs.models import Job, JobStatus
from tandem.jobs.registry import TaskRegistry
from tandem.jobs.runner import JobMetrics, JobRunner, worker_name
from tandem.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "procrastinate"
QUEUE = "tandem"
TASK_NAME = "tandem.run_job"
CONTEXT_KEY = "tandem_worker"
# procrastinate's worker heartbeat; a worker silent for STALLED_AFTER is considered dead.
HEARTBEAT_SECONDS = 5.0
STALLED_AFTER_SECONDS = 30.0
# A due pending job is an orphan only after this long: deferral happens in the submitting
# transaction, so a live job is never without a procrastinate job for more than a moment.
ORPHANED_AFTER_SECONDS = 30.0
ORPHAN_SWEEP_LIMIT = 500

_DEFER = text(
    f"SELECT {SCHEMA}.procrastinate_defer_jobs_v1(ARRAY[ROW("
    ":queue, :task, 0, NULL, NULL, CAST(:args AS jsonb), CAST(:scheduled_at AS timestamptz)"
    f")]::{SCHEMA}.procrastinate_job_to_defer_v1[])"
)


# procrastinate's job states that will still look at our job; `args->>'job_id'` is how
# `ProcrastinateDispatch` names it.
_ORPHANS = text(
    "SELECT j.id FROM jobs AS j "
    "WHERE j.status = 'pending' AND j.next_run_at < :due_before "
    "AND NOT EXISTS ("
    "SELECT 1 FROM procrastinate.procrastinate_jobs AS p "
    "WHERE p.task_name = :task AND p.status IN ('todo', 'doing') "
    "AND p.args->>'job_id' = CAST(j.id AS text)"
    ") ORDER BY j.next_run_at LIMIT :limit"
)


def libpq_conninfo(database_url: str) -> str:
    """`postgresql+psycopg://...` as libpq spells it (`postgresql://...`)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("The distributed executor needs PostgreSQL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ProcrastinateDispatch:
    """Defers `tandem.run_job` in the caller's transaction (see the module docstring)."""

    async def enqueue(self, session: AsyncSession, job_id: uuid.UUID, run_at: datetime) -> None:
        await session.execute(
            _DEFER,
            {
                "queue": QUEUE,
                "task": TASK_NAME,
                "args": json.dumps({"job_id": str(job_id)}),
                # Due now: no schedule (procrastinate compares with the database's clock).
                "scheduled_at": run_at if run_at > utcnow() else None,
            },
        )

    async def cancel(self, session: AsyncSession, job_id: uuid.UUID) -> None:
        """Nothing to send: the worker running the job notices at its next heartbeat."""


async def _run_job(context: JobContext, job_id: str) -> str | None:
    """The one procrastinate task: look at our job `job_id` and run it if it is ours to run."""
    worker: DistributedWorker = context.additional_context[CONTEXT_KEY]
    status = await worker.run_job(uuid.UUID(job_id))
    return status.value if status is not None else None


def create_procrastinate_app(settings: Settings, *, pool_size: int = 4) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_conninfo(settings.database_url),
        kwargs={"options": f"-c search_path={SCHEMA}"},
        min_size=1,
        max_size=pool_size,
    )
    app = procrastinate.App(connector=connector)
    app.task(name=TASK_NAME, queue=QUEUE, pass_context=True, retry=False)(_run_job)
    return app


class DistributedWorker:
    """One `tandem worker`: procrastinate fetches, our executor claims and runs."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: TaskRegistry,
        *,
        concurrency: int | None = None,
        metrics: JobMetrics | None = None,
        resources: Mapping[str, Any] | None = None,
        name: str | None = None,
        sweep_interval_seconds: float = STALLED_AFTER_SECONDS / 2,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.concurrency = concurrency or settings.job_concurrency
        self.dispatch = ProcrastinateDispatch()
        # Jobs that tasks submit deep inside their transactions are deferred in them too.
        bind_dispatch(sessionmaker, self.dispatch)
        self.sweep_interval_seconds = sweep_interval_seconds
        self.runner = JobRunner(
            sessionmaker=sessionmaker,
            registry=registry,
            settings=settings,
            dispatch=self.dispatch,
            worker=name or worker_name("worker"),
            metrics=metrics,
            resources=dict(resources or {}),
        )
        self.executor = Executor(self.runner, None, concurrency=self.concurrency, claim_loop=False)
        self.app = create_procrastinate_app(settings, pool_size=self.concurrency + 2)
        self._stop = asyncio.Event()
        self.started = asyncio.Event()

    @property
    def name(self) -> str:
        return self.runner.worker

    def stop(self) -> None:
        """Asks `run` to shut down gracefully (safe to call from a signal handler)."""
        self._stop.set()

    async def run(self, *, grace_seconds: float | None = None) -> None:
        """Runs until `stop()`: no new jobs are fetched, running ones get `grace_seconds`
        (default: half the lease) to finish and are then handed back for another worker."""
        grace = self.settings.job_lease_seconds / 2 if grace_seconds is None else grace_seconds
        async with self.app.open_async():
            worker = ProcrastinateWorker(
                self.app,
                queues=[QUEUE],
                name=self.name,
                concurrency=self.concurrency,
                fetch_job_polling_interval=self.settings.job_poll_seconds,
                install_signal_handlers=False,
                additional_context={CONTEXT_KEY: self},
                # Our executor hands jobs back after `grace`; this is only a backstop.
                shutdown_graceful_timeout=grace + self.settings.job_lease_seconds,
                update_heartbeat_interval=HEARTBEAT_SECONDS,
                stalled_worker_timeout=STALLED_AFTER_SECONDS,
            )
            self.executor.start()
            sweeper = asyncio.create_task(self._sweep_loop(), name="jobs-stalled-sweep")
            fetching = asyncio.create_task(
                worker.run(),  # type: ignore[no-untyped-call]
                name="procrastinate-worker",
            )
            stop = asyncio.create_task(self._stop.wait())
            self.started.set()
            log.info("Worker %s started (concurrency %s)", self.name, self.concurrency)
            try:
                await asyncio.wait([fetching, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                log.info(
                    "Worker %s stopping (%s jobs running)", self.name, self.executor.running_jobs
                )
                worker.stop()  # type: ignore[no-untyped-call]  # no new fetches
                await self.executor.stop(grace)
                sweeper.cancel()
                stop.cancel()
                await asyncio.gather(sweeper, stop, return_exceptions=True)
                await fetching  # re-raises if procrastinate's worker failed
                log.info("Worker %s stopped", self.name)

    async def run_job(self, job_id: uuid.UUID) -> JobStatus | None:
        """procrastinate fetched our job `job_id`: claim due jobs for this worker's free slots
        (not necessarily `job_id` first: the claim is fair between organizations) and return
        `job_id`'s status after this attempt if it was among them. While it stays due but is
        not claimed here, look again whenever a job here finishes; None when there is
        nothing to run (someone else has it, it finished, or it is not due yet)."""
        while True:
            # Every fetch claims for the free slots first (waiting for one if none is free),
            # whatever became of `job_id`: so one fetch serves a batch of jobs, and the
            # fetches of the jobs claimed with it only pace the next claims.
            claims = None
            if self.executor.free_slots > 0:
                try:
                    claims = await self.executor.claim(unless_dry=True)
                except Exception:
                    # Never claimed, so no lease for the reaper to find: defer it again.
                    log.exception("Claiming job %s failed; deferring it again", job_id)
                    await self._defer_again(job_id, utcnow())
                    raise
            if any(claim.job_id == job_id for claim in claims or ()):
                return await self.executor.outcome(job_id)
            if claims is None and not self.executor.stopping:
                await self.executor.wait_for_free_slot()
                continue
            if self.executor.task_of(job_id) is not None:
                return None  # claimed with another's; it runs here
            if self.executor.succeeded_here(job_id):
                return JobStatus.succeeded
            if self.executor.stopping:
                await self._defer_again(job_id, utcnow())  # not claimed: leave it to another
                return None
            if not await self._still_due(job_id):
                return None
            await self.executor.wait_for_change(self.settings.job_poll_seconds)

    async def _still_due(self, job_id: uuid.UUID) -> bool:
        """The job waits for this worker (or another) to claim it. One whose time has not
        come by our clock (procrastinate's, the database's, said due) is deferred to then."""
        async with self.sessionmaker() as session:
            await session.connection(execution_options=READ_ONLY)
            row = (
                await session.execute(select(Job.status, Job.next_run_at).where(Job.id == job_id))
            ).one_or_none()
        if row is None or row.status is not JobStatus.pending:
            return False
        if row.next_run_at > utcnow():
            await self._defer_again(job_id, row.next_run_at)
            return False
        return True

    async def _defer_again(self, job_id: uuid.UUID, run_at: datetime) -> None:
        async with self.sessionmaker() as session, session.begin():
            await self.dispatch.enqueue(session, job_id, run_at)

    async def sweep_stalled(self) -> int:
        """procrastinate jobs whose worker stopped heart-beating go back to `todo`: if the
        worker died between fetching and claiming, our job is still pending and runs; in any
        other case our claim guard turns the retried procrastinate job into a no-op."""
        stalled = await self.app.job_manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=STALLED_AFTER_SECONDS
        )
        swept = 0
        for job in stalled:
            try:
                await self.app.job_manager.retry_job(job)
            except Exception:  # another worker swept it first
                log.debug("Stalled procrastinate job %s already handled", job.id)
                continue
            swept += 1
        if swept:
            log.warning("Put %s procrastinate jobs of stopped workers back in the queue", swept)
        return swept

    async def sweep_orphans(self, *, older_than_seconds: float = ORPHANED_AFTER_SECONDS) -> int:
        """Defers again every pending job due for `older_than_seconds` that no procrastinate
        job will look at. A duplicate deferral is harmless (the claim guard), so several
        workers sweeping at once need no coordination."""
        due_before = utcnow() - timedelta(seconds=older_than_seconds)
        async with self.sessionmaker() as session, session.begin():
            orphans = (
                await session.scalars(
                    _ORPHANS,
                    {"due_before": due_before, "task": TASK_NAME, "limit": ORPHAN_SWEEP_LIMIT},
                )
            ).all()
            for job_id in orphans:
                await self.dispatch.enqueue(session, uuid.UUID(str(job_id)), utcnow())
        if orphans:
            log.warning("Deferred %s pending jobs that no worker was going to run", len(orphans))
        return len(orphans)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_seconds)
            for sweep in (self.sweep_stalled, self.sweep_orphans):
                try:
                    await sweep()
                except Exception:
                    log.exception("Sweep %s failed", sweep.__name__)
