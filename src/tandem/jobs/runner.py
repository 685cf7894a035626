"""Running one claimed job: the `JobRunner` (runs the task, records what came of it), the
`SuccessWriter` that records successes in groups, and the jobs' metrics.

The `Executor` (`tandem.jobs.executor`) decides what to run and when; a runner runs it.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.errors import database_unavailable
from tandem.jobs import lifecycle
from tandem.jobs.claims import Claim
from tandem.jobs.dispatch import Dispatch
from tandem.jobs.models import JobStatus
from tandem.jobs.registry import SuccessWrite, TaskContext, TaskRegistry, UnknownTask
from tandem.jobs.sizes import check_result_size
from tandem.settings import Settings

log = logging.getLogger(__name__)


def worker_name(kind: str) -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter(
            "tandem_jobs_finished_total",
            "Job attempts by task and the job's status after them.",
            ["task", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "tandem_job_attempt_duration_seconds",
            "How long job attempts ran, by task.",
            ["task"],
            registry=registry,
        )
        self.by_status = Gauge(
            "tandem_jobs", "Jobs by status, counted when scraped.", ["status"], registry=registry
        )


class SuccessWriter:
    """Group commit for successes: runners that finish while a write is in flight are recorded
    together in the next transaction, so a burst of short jobs costs one commit per batch,
    not one per job (on SQLite, also one wait for the write lock instead of one per runner).
    If a batch fails, each success is recorded on its own, so one bad result fails one job
    (not when the database is unreachable: the batch was already retried through that)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._queue: list[
            tuple[Claim, Any, Sequence[SuccessWrite], asyncio.Future[JobStatus | None]]
        ] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(
        self, claim: Claim, result: Any, writes: Sequence[SuccessWrite] = ()
    ) -> JobStatus | None:
        done: asyncio.Future[JobStatus | None] = asyncio.get_running_loop().create_future()
        self._queue.append((claim, result, writes, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="jobs-success-writer")
        return await asyncio.shield(done)

    async def idle(self) -> None:
        """Returns once no write is in flight (at once if none is)."""
        if self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                statuses = await lifecycle.record_successes(
                    self.sessionmaker,
                    [(claim, result, writes) for claim, result, writes, _ in batch],
                )
            except Exception as exc:
                for claim, result, writes, done in batch:
                    if database_unavailable(exc):  # retried already: one by one would too
                        if not done.done():
                            done.set_exception(exc)
                    else:
                        await self._one(claim, result, writes, done)
                continue
            for (_, _, _, done), status in zip(batch, statuses, strict=True):
                if not done.done():
                    done.set_result(status)

    async def _one(
        self,
        claim: Claim,
        result: Any,
        writes: Sequence[SuccessWrite],
        done: "asyncio.Future[JobStatus | None]",
    ) -> None:
        try:
            status = await lifecycle.record_success(self.sessionmaker, claim, result, writes)
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(status)


@dataclass
class JobRunner:
    """Runs one claimed job's task and records what came of it."""

    sessionmaker: async_sessionmaker[AsyncSession]
    registry: TaskRegistry
    settings: Settings
    dispatch: Dispatch
    worker: str
    metrics: JobMetrics | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    successes: SuccessWriter | None = None  # group commit; set by the embedded executor
    # For the claim loop's look for due jobs, which writes nothing: on SQLite it then need
    # not wait for (nor hold up) the process's one write connection. Default: `sessionmaker`.
    read_sessionmaker: async_sessionmaker[AsyncSession] | None = None

    async def run(
        self,
        claim: Claim,
        outside_slot: Any = contextlib.nullcontext,
        ran: Callable[[], None] | None = None,
    ) -> JobStatus | None:
        """Runs the task; its failure is a failed attempt. A success that cannot be recorded
        because the database stayed unreachable is not turned into a failure: the job stays
        `running` until its lease expires (the error is raised); one whose result cannot be
        stored at all is a failed attempt. `ran` is called once the task's code has ended,
        before its outcome is recorded."""
        started = time.perf_counter()
        try:
            try:
                result, writes = await self._call(claim, outside_slot)
            finally:
                if ran is not None:
                    ran()
        except UnknownTask:
            status = await self._failed(claim, f"Unknown task '{claim.task}'")
        except Exception as exc:  # any failure of task code is one failed attempt
            log.info("Job %s attempt %s failed: %r", claim.job_id, claim.attempt, exc)
            status = await self._failed(claim, f"{type(exc).__name__}: {exc}")
        else:
            status = await self._succeeded(claim, result, writes)
        self._observe(claim, status, time.perf_counter() - started)
        return status

    async def _call(self, claim: Claim, outside_slot: Any) -> tuple[Any, list[SuccessWrite]]:
        definition = self.registry.get(claim.task)
        context = TaskContext(
            job_id=claim.job_id,
            attempt=claim.attempt,
            run=claim.run,
            sessionmaker=self.sessionmaker,
            settings=self.settings,
            resources=dict(self.resources),
            max_attempts=claim.max_attempts,
            organization_id=claim.organization_id,
            outside_slot=outside_slot,
            handed=claim.handed,
        )
        result = await definition.function(context, claim.payload)
        check_result_size(result, self.settings.job_max_result_bytes)
        return result, context.with_success

    async def _succeeded(
        self, claim: Claim, result: Any, writes: Sequence[SuccessWrite]
    ) -> JobStatus | None:
        try:
            if self.successes is not None:
                return await self.successes.write(claim, result, writes)
            return await lifecycle.record_success(self.sessionmaker, claim, result, writes)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            log.info("Job %s result could not be recorded: %r", claim.job_id, exc)
            return await self._failed(claim, f"{type(exc).__name__}: {exc}")

    async def _failed(self, claim: Claim, error: str) -> JobStatus | None:
        return await lifecycle.record_failure(
            self.sessionmaker, claim, error, self.settings.job_retry_base_seconds, self.dispatch
        )

    def _observe(self, claim: Claim, status: JobStatus | None, seconds: float) -> None:
        if self.metrics is not None and status is not None:
            self.metrics.finished.labels(claim.task, status.value).inc()
            self.metrics.duration.labels(claim.task).observe(seconds)
