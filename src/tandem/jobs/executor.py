"""Running jobs: the `JobRunner` every executor shares, and the embedded executor.

The embedded executor lives inside `tandem serve`: a loop claims due jobs (up to
`TANDEM_JOB_CONCURRENCY` at once), a heartbeat renews their leases and notices cancellation
requests, and a reaper gives jobs whose lease expired (their worker died) another attempt.
`tandem worker` runs the same executor without its claim loop: procrastinate tells it which
job to claim and hands the claim to `run_claim` (see `tandem.jobs.distributed`).
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.jobs import lifecycle
from tandem.jobs.dispatch import Dispatch, InProcessDispatch
from tandem.jobs.lifecycle import Claim
from tandem.jobs.models import JobStatus
from tandem.jobs.registry import TaskContext, TaskRegistry, UnknownTask
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
    If a batch fails, each success is recorded on its own, so one bad result fails one job."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._queue: list[tuple[Claim, Any, asyncio.Future[JobStatus | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, claim: Claim, result: Any) -> JobStatus | None:
        done: asyncio.Future[JobStatus | None] = asyncio.get_running_loop().create_future()
        self._queue.append((claim, result, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="jobs-success-writer")
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                statuses = await lifecycle.record_successes(
                    self.sessionmaker, [(claim, result) for claim, result, _ in batch]
                )
            except Exception:
                for claim, result, done in batch:
                    await self._one(claim, result, done)
                continue
            for (_, _, done), status in zip(batch, statuses, strict=True):
                if not done.done():
                    done.set_result(status)

    async def _one(
        self, claim: Claim, result: Any, done: "asyncio.Future[JobStatus | None]"
    ) -> None:
        try:
            status = await lifecycle.record_success(self.sessionmaker, claim, result)
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

    async def run(self, claim: Claim) -> JobStatus | None:
        started = time.perf_counter()
        try:
            definition = self.registry.get(claim.task)
            context = TaskContext(
                job_id=claim.job_id,
                attempt=claim.attempt,
                run=claim.run,
                sessionmaker=self.sessionmaker,
                settings=self.settings,
                resources=dict(self.resources),
                max_attempts=claim.max_attempts,
            )
            result = await definition.function(context, claim.payload)
            check_result_size(result, self.settings.job_max_result_bytes)
            if self.successes is not None:
                status = await self.successes.write(claim, result)
            else:
                status = await lifecycle.record_success(self.sessionmaker, claim, result)
        except UnknownTask:
            status = await self._failed(claim, f"Unknown task '{claim.task}'")
        except Exception as exc:  # any failure of task code is one failed attempt
            log.info("Job %s attempt %s failed: %r", claim.job_id, claim.attempt, exc)
            status = await self._failed(claim, f"{type(exc).__name__}: {exc}")
        self._observe(claim, status, time.perf_counter() - started)
        return status

    async def _failed(self, claim: Claim, error: str) -> JobStatus | None:
        return await lifecycle.record_failure(
            self.sessionmaker, claim, error, self.settings.job_retry_base_seconds, self.dispatch
        )

    def _observe(self, claim: Claim, status: JobStatus | None, seconds: float) -> None:
        if self.metrics is not None and status is not None:
            self.metrics.finished.labels(claim.task, status.value).inc()
            self.metrics.duration.labels(claim.task).observe(seconds)


class StopReason(Enum):
    cancel_requested = "cancel_requested"
    lease_lost = "lease_lost"
    shutdown = "shutdown"


@dataclass
class _Running:
    claim: Claim
    task: "asyncio.Task[JobStatus | None]"
    stop_reason: StopReason | None = None


class EmbeddedExecutor:
    def __init__(
        self,
        runner: JobRunner,
        dispatch: InProcessDispatch | None = None,
        *,
        concurrency: int | None = None,
        claim_loop: bool = True,
    ) -> None:
        """`claim_loop=False`: this executor claims nothing itself; claims made elsewhere are
        handed to `run_claim` (the heartbeat and the reaper run either way)."""
        settings = runner.settings
        self.runner = runner
        if runner.successes is None:
            runner.successes = SuccessWriter(runner.sessionmaker)
        self.dispatch = dispatch
        self.claim_loop = claim_loop
        self.concurrency = concurrency or settings.job_concurrency
        self.lease = settings.job_lease_seconds
        self.poll = settings.job_poll_seconds
        self._running: dict[uuid.UUID, _Running] = {}
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running_jobs(self) -> int:
        return len(self._running)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def wake(self) -> None:
        self._wake.set()

    def stop_job(self, job_id: uuid.UUID) -> None:
        """A cancellation was requested for `job_id` (committed): if it runs here, stop it
        now rather than at the next heartbeat."""
        entry = self._running.get(job_id)
        if entry is not None and entry.stop_reason is None and not entry.task.done():
            entry.stop_reason = StopReason.cancel_requested
            entry.task.cancel()

    def start(self) -> None:
        if self.dispatch is not None:
            self.dispatch.subscribe(self.wake, self.stop_job)
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="jobs-heartbeat"),
            asyncio.create_task(self._reaper_loop(), name="jobs-reaper"),
        ]
        if self.claim_loop:
            self._tasks.append(asyncio.create_task(self._claim_loop(), name="jobs-claim"))

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stops claiming; running jobs get `grace_seconds` (default: half the lease) to
        finish, then are handed back for another process to run."""
        self._stopping = True
        self._slot_freed.set()
        if self.dispatch is not None:
            self.dispatch.unsubscribe(self.wake, self.stop_job)
        self.wake()
        grace = self.lease / 2 if grace_seconds is None else grace_seconds
        running = [entry.task for entry in self._running.values()]
        if running:
            await asyncio.wait(running, timeout=grace)
        for entry in list(self._running.values()):
            entry.stop_reason = StopReason.shutdown
            entry.task.cancel()
        remaining = [entry.task for entry in self._running.values()]
        if remaining:
            await asyncio.wait(remaining)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _claim_loop(self) -> None:
        # The last claim filled every free slot, so more jobs are probably due: claim again
        # without the read-only look first (it only spares an idle executor the write lock).
        backlog = False
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._running)
            try:
                if free > 0 and (backlog or await lifecycle.has_due_jobs(self.runner.sessionmaker)):
                    claims = await lifecycle.claim_due(
                        self.runner.sessionmaker, self.runner.worker, free, self.lease
                    )
                    for claim in claims:
                        self._launch(claim)
                    backlog = len(claims) == free
                    if backlog:
                        continue  # there may be more; look again once a slot frees
            except Exception:
                log.exception("Claiming jobs failed; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)

    @property
    def free_slots(self) -> int:
        return self.concurrency - len(self._running)

    async def wait_for_free_slot(self) -> None:
        while self.free_slots <= 0 and not self._stopping:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def run_in_background(self, claim: Claim) -> None:
        """Runs a claim made elsewhere like `run_claim`, without waiting for it."""
        self._launch(claim)

    async def run_claim(self, claim: Claim) -> JobStatus | None:
        """Runs a claim made elsewhere as if this executor had made it: under the heartbeat,
        stopped on cancellation or a lost lease, handed back at shutdown. Returns the job's
        status afterwards (None when the outcome was not this worker's to record)."""
        task = self._launch(claim)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Whoever awaited us is going away: stop the job and give it back.
            entry = self._running.get(claim.job_id)
            if entry is not None and not task.done():
                entry.stop_reason = StopReason.shutdown
                task.cancel()
            await asyncio.wait([task])
            raise

    def _launch(self, claim: Claim) -> "asyncio.Task[JobStatus | None]":
        task = asyncio.create_task(self._run(claim), name=f"job-{claim.job_id}")
        self._running[claim.job_id] = _Running(claim, task)
        return task

    async def _run(self, claim: Claim) -> JobStatus | None:
        try:
            return await self.runner.run(claim)
        except asyncio.CancelledError:
            return await self._stopped(claim)
        finally:
            self._running.pop(claim.job_id, None)
            self._slot_freed.set()
            self.wake()  # a slot is free

    async def _stopped(self, claim: Claim) -> JobStatus | None:
        entry = self._running.get(claim.job_id)
        reason = entry.stop_reason if entry else None
        sessionmaker = self.runner.sessionmaker
        if reason is StopReason.cancel_requested:
            return await lifecycle.record_cancelled(sessionmaker, claim)
        if reason is StopReason.shutdown:
            return await lifecycle.hand_back(sessionmaker, claim, self.runner.dispatch)
        # lease_lost: another worker owns the job now; there is nothing to record.
        return None

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            entries = list(self._running.values())
            try:
                held, cancelled = await lifecycle.heartbeat(
                    self.runner.sessionmaker,
                    self.runner.worker,
                    [entry.claim for entry in entries],
                    self.lease,
                )
            except Exception:
                log.exception("Job heartbeat failed; leases may expire")
                continue
            for entry in entries:
                if entry.claim.job_id not in held and not entry.task.done():
                    log.warning("Lost the lease of job %s; stopping it", entry.claim.job_id)
                    entry.stop_reason = StopReason.lease_lost
                    entry.task.cancel()
                elif entry.claim.job_id in cancelled:
                    entry.stop_reason = StopReason.cancel_requested
                    entry.task.cancel()

    async def _reaper_loop(self) -> None:
        while True:
            try:
                await lifecycle.reap_expired(
                    self.runner.sessionmaker,
                    self.runner.settings.job_retry_base_seconds,
                    self.runner.dispatch,
                )
            except Exception:
                log.exception("Reaping expired job leases failed")
            await asyncio.sleep(self.lease / 2)
