"""The executor side of a job: claim, heartbeat, record the outcome, reap expired leases.

Every executor (embedded or `tandem worker`) goes through these functions, so retries,
backoff and the move to `dead` are decided here, the same for all. Each change is its own
short transaction and is guarded on the claim's `lease_token`: a worker that lost its lease
(it stalled, the reaper gave the job to someone else) changes nothing.
"""

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.db import READ_ONLY, utcnow
from tandem.jobs import states
from tandem.jobs.dispatch import Dispatch
from tandem.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tandem.jobs.notify import notify_finished
from tandem.jobs.registry import registry as task_registry
from tandem.retry import RetryPolicy

log = logging.getLogger(__name__)

Sessionmaker = async_sessionmaker[AsyncSession]
MAX_ERROR_LENGTH = 4000
# Each retry delay is drawn from [50 %, 100 %] of its exponential ceiling, so jobs that failed
# together (a dependency went down) do not all come back in the same instant.
RETRY_JITTER = 0.5


@dataclass(frozen=True)
class Claim:
    """A job this worker holds the lease of, with what the task needs to run."""

    job_id: uuid.UUID
    token: uuid.UUID
    task: str
    payload: dict[str, Any]
    attempt: int
    run: int
    max_attempts: int


def _claim_values(worker: str, token: uuid.UUID, now: datetime, lease: float) -> dict[str, Any]:
    return {
        "status": JobStatus.running,
        "attempts": Job.attempts + 1,
        "runs": Job.runs + 1,
        "lease_owner": worker,
        "lease_token": token,
        "lease_expires_at": now + timedelta(seconds=lease),
        "started_at": now,
        "updated_at": now,
    }


async def _start(
    session: AsyncSession, job_ids: Sequence[uuid.UUID], worker: str, lease: float, now: datetime
) -> list[Claim]:
    token = uuid.uuid4()  # one per claim batch: (job id, token) is unique per claim
    rows = (
        await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.pending)
            .values(**_claim_values(worker, token, now, lease))
            .returning(Job.id, Job.task, Job.payload, Job.attempts, Job.runs, Job.max_attempts)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if rows:
        await session.execute(
            insert(JobAttempt),
            [
                {
                    "id": uuid.uuid4(),
                    "job_id": r.id,
                    "number": r.runs,
                    "worker": worker,
                    "outcome": AttemptOutcome.running,
                    "started_at": now,
                }
                for r in rows
            ],
        )
    return [Claim(r.id, token, r.task, r.payload, r.attempts, r.runs, r.max_attempts) for r in rows]


async def has_due_jobs(sessionmaker: Sessionmaker, now: datetime | None = None) -> bool:
    """A read that takes no write lock (SQLite), so an idle executor never queues for it."""
    async with sessionmaker() as session:
        await session.connection(execution_options=READ_ONLY)
        due = await session.scalar(
            select(Job.id)
            .where(Job.status == JobStatus.pending, Job.next_run_at <= (now or utcnow()))
            .limit(1)
        )
    return due is not None


async def claim_due(
    sessionmaker: Sessionmaker, worker: str, limit: int, lease: float
) -> list[Claim]:
    """Up to `limit` due jobs, oldest first. PostgreSQL skips rows other workers are
    claiming (SKIP LOCKED); SQLite transactions begin IMMEDIATE, so claims are serial."""
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        job_ids = (
            await session.scalars(
                select(Job.id)
                .where(Job.status == JobStatus.pending, Job.next_run_at <= now)
                .order_by(Job.next_run_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not job_ids:
            return []
        return await _start(session, job_ids, worker, lease, now)


async def claim_job(
    sessionmaker: Sessionmaker, job_id: uuid.UUID, worker: str, lease: float
) -> Claim | None:
    """Claims one given job if it is due (the distributed executor is told which)."""
    claim, _ = await claim_job_and_due(sessionmaker, job_id, worker, lease, limit=1)
    return claim


async def claim_job_and_due(
    sessionmaker: Sessionmaker, job_id: uuid.UUID, worker: str, lease: float, limit: int
) -> tuple[Claim | None, list[Claim]]:
    """Claims the given job if it is due and, in the same transaction, up to `limit - 1`
    other due jobs (oldest first, skipping those other workers are claiming): one claim
    transaction serves a burst of jobs instead of one each. Returns the given job's claim
    (None if it was not claimable) and the others'."""
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        due = await session.scalar(
            select(Job.id)
            .where(Job.id == job_id, Job.status == JobStatus.pending, Job.next_run_at <= now)
            .with_for_update(skip_locked=True)
        )
        job_ids = [] if due is None else [due]
        if limit > len(job_ids):
            job_ids += (
                await session.scalars(
                    select(Job.id)
                    .where(
                        Job.status == JobStatus.pending,
                        Job.next_run_at <= now,
                        Job.id != job_id,
                    )
                    .order_by(Job.next_run_at)
                    .limit(limit - len(job_ids))
                    .with_for_update(skip_locked=True)
                )
            ).all()
        claims = await _start(session, job_ids, worker, lease, now) if job_ids else []
    given = next((claim for claim in claims if claim.job_id == job_id), None)
    return given, [claim for claim in claims if claim is not given]


async def heartbeat(
    sessionmaker: Sessionmaker, worker: str, claims: Sequence[Claim], lease: float
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Renews the leases still held; returns (held, cancel requested) job ids."""
    if not claims:
        return set(), set()
    now = utcnow()
    held_by_me = [and_(Job.id == c.job_id, Job.lease_token == c.token) for c in claims]
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.execute(
                update(Job)
                .where(Job.status == JobStatus.running, Job.lease_owner == worker)
                .where(or_(*held_by_me))
                .values(lease_expires_at=now + timedelta(seconds=lease), updated_at=now)
                .returning(Job.id, Job.cancel_requested)
                .execution_options(synchronize_session=False)
            )
        ).all()
    return {r.id for r in rows}, {r.id for r in rows if r.cancel_requested}


async def _finish(
    sessionmaker: Sessionmaker,
    claim: Claim,
    decide: Callable[[states.JobState], states.JobState],
    outcome: AttemptOutcome,
    *,
    error: str | None = None,
    result: Any = None,
    retry_base_seconds: float | None = None,
    dispatch: Dispatch | None = None,
) -> JobStatus | None:
    """Applies `decide` to the job if this claim still holds it; returns the new status."""
    async with sessionmaker() as session, session.begin():
        return await _apply(
            session,
            claim,
            decide,
            outcome,
            error=error,
            result=result,
            retry_base_seconds=retry_base_seconds,
            dispatch=dispatch,
        )


async def _apply(
    session: AsyncSession,
    claim: Claim,
    decide: Callable[[states.JobState], states.JobState],
    outcome: AttemptOutcome,
    *,
    error: str | None = None,
    result: Any = None,
    retry_base_seconds: float | None = None,
    dispatch: Dispatch | None = None,
) -> JobStatus | None:
    """Applies `decide` to the job if this claim still holds it; returns the new status."""
    now = utcnow()
    job = await session.scalar(select(Job).where(_still_held([claim])).with_for_update())
    if job is None:
        log.warning("Job %s changed hands before its outcome was recorded", claim.job_id)
        return None
    after = decide(
        states.JobState(job.status, job.attempts, job.max_attempts, job.cancel_requested)
    )
    job.status, job.attempts = after.status, after.attempts
    job.lease_owner = job.lease_token = job.lease_expires_at = None
    job.updated_at = now
    if error is not None:
        job.last_error = error[:MAX_ERROR_LENGTH]
    if after.status is JobStatus.succeeded:
        job.result, job.last_error = result, None
    if after.status in states.FINISHED:
        job.finished_at = now
    if after.status is JobStatus.pending:
        # A handed-back job runs again at once; a failed one waits out its backoff.
        delay = timedelta(0)
        if retry_base_seconds is not None:
            policy = RetryPolicy(job.max_attempts, retry_base_seconds, jitter=RETRY_JITTER)
            delay = policy.delay(job.attempts)
        job.next_run_at = now + delay
        if dispatch is not None:
            await dispatch.enqueue(session, job.id, job.next_run_at)
    if after.status is JobStatus.cancelled:
        outcome = AttemptOutcome.cancelled
    await session.execute(
        update(JobAttempt)
        .where(JobAttempt.job_id == job.id, JobAttempt.number == claim.run)
        .values(outcome=outcome, finished_at=now, error=error and error[:MAX_ERROR_LENGTH])
    )
    if after.status in states.GAVE_UP:
        await task_registry.gave_up(session, job)
    if after.status in (JobStatus.succeeded, JobStatus.dead):
        await notify_finished(session, job)
    return after.status


def _still_held(claims: Sequence[Claim]) -> ColumnElement[bool]:
    """The running jobs these claims still hold."""
    return and_(
        Job.status == JobStatus.running,
        or_(*(and_(Job.id == c.job_id, Job.lease_token == c.token) for c in claims)),
    )


_JOBS = cast(Table, Job.__table__)
_ATTEMPTS = cast(Table, JobAttempt.__table__)


async def record_successes(
    sessionmaker: Sessionmaker, finished: Sequence[tuple[Claim, Any]]
) -> list[JobStatus | None]:
    """Several successes in one transaction (group commit): under load the executor's runners
    finish together, and one commit, one locking read and two multi-row updates for all of
    them cost about what one job's do. Written in Core: this is the executor's hot path."""
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        claims = [claim for claim, _ in finished]
        held = {
            row.id: row
            for row in await session.execute(
                select(Job.id, Job.notify).where(_still_held(claims)).with_for_update()
            )
        }
        mine = [(claim, result) for claim, result in finished if claim.job_id in held]
        if mine:
            connection = await session.connection()
            await connection.execute(
                update(_JOBS)
                .where(_JOBS.c.id == bindparam("b_id"))
                .values(
                    status=JobStatus.succeeded,
                    result=bindparam("b_result", type_=_JOBS.c.result.type),
                    last_error=None,
                    lease_owner=None,
                    lease_token=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                ),
                [{"b_id": claim.job_id, "b_result": result} for claim, result in mine],
            )
            await connection.execute(
                update(_ATTEMPTS)
                .where(
                    _ATTEMPTS.c.job_id == bindparam("b_job_id"),
                    _ATTEMPTS.c.number == bindparam("b_number"),
                )
                .values(outcome=AttemptOutcome.succeeded, finished_at=now),
                [{"b_job_id": claim.job_id, "b_number": claim.run} for claim, _ in mine],
            )
            for claim, _ in mine:
                if held[claim.job_id].notify:
                    await notify_finished(session, await session.get_one(Job, claim.job_id))
    return [JobStatus.succeeded if claim.job_id in held else None for claim in claims]


async def record_success(sessionmaker: Sessionmaker, claim: Claim, result: Any) -> JobStatus | None:
    return await _finish(
        sessionmaker, claim, states.succeed, AttemptOutcome.succeeded, result=result
    )


async def record_failure(
    sessionmaker: Sessionmaker,
    claim: Claim,
    error: str,
    retry_base_seconds: float,
    dispatch: Dispatch,
    outcome: AttemptOutcome = AttemptOutcome.failed,
) -> JobStatus | None:
    return await _finish(
        sessionmaker,
        claim,
        states.fail,
        outcome,
        error=error,
        retry_base_seconds=retry_base_seconds,
        dispatch=dispatch,
    )


async def record_cancelled(sessionmaker: Sessionmaker, claim: Claim) -> JobStatus | None:
    return await _finish(
        sessionmaker, claim, states.stop_cancelled, AttemptOutcome.cancelled, error="Cancelled"
    )


async def hand_back(
    sessionmaker: Sessionmaker, claim: Claim, dispatch: Dispatch
) -> JobStatus | None:
    return await _finish(
        sessionmaker,
        claim,
        states.hand_back,
        AttemptOutcome.handed_back,
        error="Handed back at shutdown",
        dispatch=dispatch,
    )


async def reap_expired(
    sessionmaker: Sessionmaker, retry_base_seconds: float, dispatch: Dispatch
) -> int:
    """Jobs whose lease ran out (their worker died or hung) fail this attempt: a crash
    counts as an attempt, so a job that keeps killing its worker ends in `dead`."""
    now = utcnow()
    async with sessionmaker() as session:
        await session.connection(execution_options=READ_ONLY)
        expired = (
            await session.execute(
                select(
                    Job.id, Job.lease_token, Job.task, Job.attempts, Job.runs, Job.max_attempts
                ).where(Job.status == JobStatus.running, Job.lease_expires_at < now)
            )
        ).all()
    reaped = 0
    for row in expired:
        claim = Claim(
            row.id, row.lease_token, row.task, {}, row.attempts, row.runs, row.max_attempts
        )
        status = await record_failure(
            sessionmaker,
            claim,
            "Lease expired: the worker running this attempt stopped responding",
            retry_base_seconds,
            dispatch,
            outcome=AttemptOutcome.lease_expired,
        )
        if status is not None:
            log.warning("Job %s lease expired; now %s", row.id, status.value)
            reaped += 1
    return reaped
