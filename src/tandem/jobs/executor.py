"""Running jobs: the `Executor` around the `JobRunner` (`tandem.jobs.runner`) that runs one claim.

An `Executor` runs at most `TANDEM_JOB_CONCURRENCY` jobs at once: it claims due jobs for its
free slots (shared between organizations, see `tandem.jobs.fairness`), a heartbeat renews
their leases and notices cancellation requests, and a reaper gives jobs whose lease expired
(their worker died) another attempt. In `tandem serve` its own loop claims whenever a slot is
free or a job is submitted; in `tandem worker` procrastinate's fetches trigger the claims
instead (see `tandem.jobs.distributed`).
"""

import asyncio
import collections
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from tandem.jobs import fairness, lifecycle
from tandem.jobs.claims import Claim
from tandem.jobs.dispatch import InProcessDispatch
from tandem.jobs.models import JobStatus
from tandem.jobs.runner import JobRunner, SuccessWriter

log = logging.getLogger(__name__)


# How many succeeded jobs an executor remembers, so that a worker told about a job it already
# ran (claimed with others) needs no database round trip to find that out.
SUCCEEDED_REMEMBERED = 10_000


class StopReason(Enum):
    cancel_requested = "cancel_requested"
    lease_lost = "lease_lost"
    shutdown = "shutdown"


@dataclass
class _Running:
    claim: Claim
    task: "asyncio.Task[JobStatus | None]"
    stop_reason: StopReason | None = None
    started: bool = False

    def stop(self, reason: StopReason) -> None:
        """Stops the job's task. One not started yet only learns the reason: cancelled
        before its first step, its coroutine would never run, and so never record the
        outcome nor free its slot; it stops itself when it starts (`Executor._run`)."""
        self.stop_reason = reason
        if self.started:
            self.task.cancel()


@dataclass(eq=False)
class HeldSlot:
    """A slot of an embedded executor, held for one job that its submitter inserts already
    claimed (`claims.claimed_at_submit`) in its own transaction: `start` once that has
    committed, `release` if it did not. Either frees the hold; the second call does nothing."""

    executor: "Executor"
    organization_id: fairness.Tenant
    worker: str
    lease: float
    claim: Claim | None = None  # set by the submitter, with the job's row
    handed: Any = None  # what the task gets in memory (`TaskContext.handed`)
    settled: bool = False

    def start(self) -> "asyncio.Task[JobStatus | None] | None":
        """The job runs here now (as if claimed by the executor); None if it was never
        inserted claimed."""
        return self.executor._start_held(self)

    def release(self) -> None:
        self.executor._release_held(self)


class Executor:
    def __init__(
        self,
        runner: JobRunner,
        dispatch: InProcessDispatch | None = None,
        *,
        concurrency: int | None = None,
        claim_loop: bool = True,
    ) -> None:
        """`claim_loop=False`: claims are triggered from outside (`claim`), not by a loop of
        its own (the heartbeat and the reaper run either way)."""
        settings = runner.settings
        self.runner = runner
        if runner.successes is None:
            runner.successes = SuccessWriter(runner.sessionmaker)
        self.dispatch = dispatch
        self.claim_loop = claim_loop
        self.concurrency = concurrency or settings.job_concurrency
        self.caps = fairness.Caps(
            per_process=min(settings.job_org_concurrency, self.concurrency),
            total=settings.job_org_concurrency_total,
        )
        self.lease = settings.job_lease_seconds
        self.poll = settings.job_poll_seconds
        self._running: dict[uuid.UUID, _Running] = {}
        self._outside: set[uuid.UUID] = set()  # running, but waiting outside the slots
        self._recording: set[uuid.UUID] = set()  # their task ended; the outcome is written
        self._started_held: set[uuid.UUID] = set()  # running in a held slot (`hold_slot`)
        self._reserved = 0  # slots a claim in flight may fill
        # Slots held for jobs being submitted already claimed, by organization (`hold_slot`).
        self._held: collections.Counter[fairness.Tenant] = collections.Counter()
        self._held_settled = asyncio.Event()
        # Jobs may be due that no claim has taken yet: one was submitted in this process, or
        # seen due, or the last claim filled every free slot. A held slot would jump them.
        self._backlog = False
        self._served: dict[fairness.Tenant, int] = {}  # organization -> claim number
        # The last jobs that succeeded here (final: no retry can bring them back).
        self._succeeded: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()
        self._claims = itertools.count()
        self._dry_until = 0.0  # see `claim(unless_dry=True)`
        self._claiming = asyncio.Lock()
        # Cancels that found nothing running here while a claim was under way: the claim may
        # have committed their jobs and not launched them yet (its session still closing).
        self._stop_at_launch: set[uuid.UUID] = set()
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

    @property
    def free_slots(self) -> int:
        return (
            self.concurrency
            - len(self._running)
            + len(self._outside)
            - self._reserved
            - self._held.total()
        )

    def wake(self) -> None:
        self._wake.set()

    def _submitted(self) -> None:
        """A job was submitted in this process (dispatch): it is due for a claim."""
        self._backlog = True
        self.wake()

    def hold_slot(self, organization_id: fairness.Tenant) -> HeldSlot | None:
        """A free slot for a job of `organization_id` that its submitter will insert already
        claimed and start here, or None: no slot is free, the organization is at its cap in
        this process, jobs may be waiting for a claim (they come first), a cap across
        processes applies (only a claim's count in the database can check it), or the
        executor is stopping. The submitter then submits the job as usual."""
        if (
            self._stopping
            or self._backlog
            or self.caps.total is not None
            # A job whose outcome is being written (group commit) has ended its task: its
            # slot and its place under the cap are as good as free.
            or self.free_slots + len(self._recording) <= 0
            or self._running_by_organization(but_recording=True)[organization_id]
            >= self.caps.per_process
        ):
            return None
        self._held[organization_id] += 1
        self._held_settled.clear()
        return HeldSlot(self, organization_id, self.runner.worker, self.lease)

    def _unhold(self, held: HeldSlot) -> bool:
        if held.settled:
            return False
        held.settled = True
        self._held[held.organization_id] -= 1
        if self._held[held.organization_id] <= 0:
            del self._held[held.organization_id]
        if not self._held:
            self._held_settled.set()
        return True

    def _start_held(self, held: HeldSlot) -> "asyncio.Task[JobStatus | None] | None":
        if not self._unhold(held):
            return None
        if held.claim is None:  # the submitter found its job already there (idempotency)
            self._slot_freed.set()
            return None
        # Launched even while stopping: the job is claimed, and `stop` waits for held slots
        # before it hands running jobs back.
        self._served[held.organization_id] = next(self._claims)
        self._started_held.add(held.claim.job_id)
        return self._launch(replace(held.claim, handed=held.handed))

    def _release_held(self, held: HeldSlot) -> None:
        if self._unhold(held):
            self._slot_freed.set()

    def stop_job(self, job_id: uuid.UUID) -> None:
        """A cancellation was requested for `job_id` (committed): if it runs here, stop it
        now rather than at the next heartbeat."""
        entry = self._running.get(job_id)
        if entry is None:
            if self._claiming.locked():
                self._stop_at_launch.add(job_id)
        elif entry.stop_reason is None and not entry.task.done():
            entry.stop(StopReason.cancel_requested)

    def start(self) -> None:
        if self.dispatch is not None:
            self.dispatch.subscribe(self._submitted, self.stop_job)
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
            self.dispatch.unsubscribe(self._submitted, self.stop_job)
        self.wake()
        async with self._claiming:  # a claim in flight has launched its jobs
            pass
        while self._held:  # so have the submitters that hold slots
            await self._held_settled.wait()
        grace = self.lease / 2 if grace_seconds is None else grace_seconds
        running = [entry.task for entry in self._running.values()]
        if running:
            await asyncio.wait(running, timeout=grace)
        for entry in list(self._running.values()):
            entry.stop(StopReason.shutdown)
        remaining = [entry.task for entry in self._running.values()]
        if remaining:
            await asyncio.wait(remaining)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def claim(self, *, unless_dry: bool = False) -> list[Claim] | None:
        """Claims due jobs for every free slot and starts them; None when there was no free
        slot to claim for (or the executor is stopping). One claim at a time per executor,
        and the slots it may fill are reserved while it runs, so neither a second claim nor
        a job coming back from outside its slot can take them meanwhile: never more than
        `concurrency` jobs at once. `unless_dry`: claims nothing (returns []) if the last
        claim left slots free for want of claimable jobs, less than a poll interval ago,
        and no job finished here since."""
        async with self._claiming:
            free = self.free_slots
            if self._stopping or free <= 0:
                return None
            if unless_dry and time.monotonic() < self._dry_until:
                return []
            self._reserved = free
            try:
                claims = await lifecycle.claim_due(
                    self.runner.sessionmaker,
                    self.runner.worker,
                    free,
                    self.lease,
                    caps=self.caps,
                    running_here=self._running_by_organization(),
                    last_served=self._served,
                )
            finally:
                self._reserved = 0
                stop_at_launch, self._stop_at_launch = self._stop_at_launch, set()
            for claim in claims:
                self._served[claim.organization_id] = next(self._claims)
                self._launch(claim)
                if claim.job_id in stop_at_launch:
                    self._running[claim.job_id].stop(StopReason.cancel_requested)
            # A claim that left slots free took every job it could: none waits behind them.
            self._backlog = len(claims) >= free
            self._dry_until = time.monotonic() + self.poll if len(claims) < free else 0.0
            return claims

    def _running_by_organization(
        self, *, but_recording: bool = False
    ) -> collections.Counter[fairness.Tenant]:
        running = collections.Counter(
            entry.claim.organization_id
            for job_id, entry in self._running.items()
            if job_id not in self._outside and not (but_recording and job_id in self._recording)
        )
        return running + self._held

    async def _claim_loop(self) -> None:
        # The last claim filled every free slot, so more jobs are probably due: claim again
        # without the read-only look first. One that left slots free took every job it
        # could; claiming again at once would be a write transaction that finds nothing.
        backlog = False
        while not self._stopping:
            self._wake.clear()
            free = self.free_slots
            try:
                if free > 0 and (
                    backlog
                    or self._backlog
                    or await lifecycle.has_due_jobs(
                        self.runner.read_sessionmaker or self.runner.sessionmaker
                    )
                ):
                    self._backlog = True
                    # Jobs whose successes are being written free their slots in a moment:
                    # one claim for them all keeps claims and group commits large.
                    if self.runner.successes is not None:
                        await self.runner.successes.idle()
                    claimed = len(await self.claim() or ())
                    backlog = claimed == free
                    if claimed == free:
                        continue  # every slot filled: look again once one frees
            except Exception:
                log.exception("Claiming jobs failed; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)

    async def wait_for_free_slot(self) -> None:
        """Returns once a slot is free (or when stopping)."""
        while self.free_slots <= 0 and not self._stopping:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    async def wait_for_change(self, at_most: float) -> None:
        """Returns when a job here finished or stepped outside its slot, or after `at_most`
        seconds."""
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_freed.wait(), at_most)

    def task_of(self, job_id: uuid.UUID) -> "asyncio.Task[JobStatus | None] | None":
        entry = self._running.get(job_id)
        return entry.task if entry is not None else None

    def succeeded_here(self, job_id: uuid.UUID) -> bool:
        """The job succeeded here lately (one of the last SUCCEEDED_REMEMBERED)."""
        return job_id in self._succeeded

    async def outcome(self, job_id: uuid.UUID) -> JobStatus | None:
        """Waits for a job running here as if awaiting it: if whoever waits goes away
        (procrastinate shutting down), the job is stopped and handed back."""
        entry = self._running.get(job_id)
        if entry is None:
            return None
        task = entry.task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                entry.stop(StopReason.shutdown)
            await asyncio.wait([task])
            raise

    def _launch(self, claim: Claim) -> "asyncio.Task[JobStatus | None]":
        task = asyncio.create_task(self._run(claim), name=f"job-{claim.job_id}")
        self._running[claim.job_id] = _Running(claim, task)
        return task

    async def _run(self, claim: Claim) -> JobStatus | None:
        status: JobStatus | None = None
        try:
            entry = self._running[claim.job_id]
            entry.started = True
            if entry.stop_reason is not None:  # stopped before this first step
                raise asyncio.CancelledError
            status = await self.runner.run(
                claim,
                lambda: self._outside_slot(claim.job_id),
                lambda: self._recording.add(claim.job_id),
            )
        except asyncio.CancelledError:
            status = await self._stopped(claim)
        except Exception:
            # Nothing could be recorded (the database stayed unreachable): the lease expires
            # and the reaper decides. The executor carries on with its other jobs.
            log.exception("Job %s: the outcome could not be recorded", claim.job_id)
        finally:
            self._running.pop(claim.job_id, None)
            self._outside.discard(claim.job_id)
            self._recording.discard(claim.job_id)
            self._dry_until = 0.0  # its organization may be under its cap again
            if status is JobStatus.succeeded:
                self._succeeded[claim.job_id] = None
                if len(self._succeeded) > SUCCEEDED_REMEMBERED:
                    self._succeeded.popitem(last=False)
            self._slot_freed.set()
            # A slot is free: claim at once. Not after a job of a held slot when no job is
            # known to wait (a burst of waiting requests would each cost a look for due
            # jobs); the next poll finds any that others submitted.
            if claim.job_id not in self._started_held or self._backlog:
                self.wake()
            self._started_held.discard(claim.job_id)
        return status

    @asynccontextmanager
    async def _outside_slot(self, job_id: uuid.UUID) -> AsyncIterator[None]:
        """The job waits for something else: its slot is free for others meanwhile, and it
        takes one back (waiting for it if need be) before it carries on."""
        self._outside.add(job_id)
        self._slot_freed.set()
        self.wake()
        try:
            yield
        except BaseException:  # stopped or failed while waiting: the job ends here
            self._outside.discard(job_id)
            raise
        try:
            while self.free_slots <= 0 and not self._stopping:
                self._slot_freed.clear()
                await self._slot_freed.wait()
        finally:
            self._outside.discard(job_id)

    async def _stopped(self, claim: Claim) -> JobStatus | None:
        entry = self._running.get(claim.job_id)
        reason = entry.stop_reason if entry else None
        sessionmaker = self.runner.sessionmaker
        try:
            if reason is StopReason.cancel_requested:
                return await lifecycle.record_cancelled(sessionmaker, claim)
            if reason is StopReason.shutdown:
                return await lifecycle.hand_back(sessionmaker, claim, self.runner.dispatch)
        except Exception:
            log.exception("Job %s: stopping it could not be recorded", claim.job_id)
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
                    entry.stop(StopReason.lease_lost)
                elif entry.claim.job_id in cancelled:
                    entry.stop(StopReason.cancel_requested)

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
