"""The executor side of a job: claim, heartbeat, record the outcome, reap expired leases.

Every executor (in `tandem serve` or `tandem worker`) goes through these functions, so
retries, backoff and the move to `dead` are decided here, the same for all. Each change is
its own short transaction and is guarded on the claim's `lease_token`: a worker that lost its
lease (it stalled, the reaper gave the job to someone else) changes nothing.

Claims share the slots between organizations (`tandem.jobs.fairness`). Recording an outcome
retries through a short database outage: the guard makes a repeated write a no-op, so a
success whose commit was acknowledged late is recorded once.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    Uuid,
    and_,
    bindparam,
    column,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningUpdate

from tandem.db import READ_ONLY, UTCDateTime, new_id, utcnow
from tandem.errors import database_unavailable
from tandem.jobs import fairness, states
from tandem.jobs.claims import Claim
from tandem.jobs.dispatch import Dispatch
from tandem.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tandem.jobs.notify import notify_finished
from tandem.jobs.registry import SuccessWrite
from tandem.jobs.registry import registry as task_registry
from tandem.retry import RetryPolicy
from tandem.webhooks.service import emit_all, job_event

log = logging.getLogger(__name__)

Sessionmaker = async_sessionmaker[AsyncSession]
MAX_ERROR_LENGTH = 4000
# Each retry delay is drawn from [50 %, 100 %] of its exponential ceiling, so jobs that failed
# together (a dependency went down) do not all come back in the same instant.
RETRY_JITTER = 0.5
# Recording an outcome through a database outage: retries from 0.1 s, doubling up to 2 s, for
# at most this long (well inside a lease, so the job is not reaped meanwhile).
RECORD_RETRY_SECONDS = 12.0
RECORD_RETRY_FIRST_SECONDS = 0.1
RECORD_RETRY_MAX_SECONDS = 2.0
# PostgreSQL: claims under a total per-organization cap take this transaction-level advisory
# lock, so that two workers never both see the last free place.
CLAIM_LOCK_KEY = 0x7A4D3C01

T = TypeVar("T")


async def retrying_outage(operation: Callable[[], Awaitable[T]], what: str) -> T:
    """Runs `operation` (a whole transaction) again while the database is unreachable, with
    backoff, for at most RECORD_RETRY_SECONDS; any other error is raised at once."""
    deadline = time.monotonic() + RECORD_RETRY_SECONDS
    delay = RECORD_RETRY_FIRST_SECONDS
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("The database is unavailable while %s; retrying in %.1f s", what, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECORD_RETRY_MAX_SECONDS)


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


def claim_update(
    job_ids: Sequence[uuid.UUID], worker: str, token: uuid.UUID, lease: float, now: datetime
) -> ReturningUpdate[Any]:
    """Starts the pending jobs `job_ids`, chosen in the same transaction (`claim_due`).

    By their key alone: the rows were read pending in this transaction and nobody can have
    changed them since (PostgreSQL: locked FOR UPDATE; SQLite: the transaction holds the
    write lock), and a `status = 'pending'` here led SQLite's planner to walk every pending
    job through the status index instead, once three or more were named."""
    return (
        update(Job)
        .where(Job.id.in_(job_ids))
        .values(**_claim_values(worker, token, now, lease))
        .returning(
            Job.id,
            Job.task,
            Job.payload,
            Job.attempts,
            Job.runs,
            Job.max_attempts,
            Job.organization_id,
        )
        .execution_options(synchronize_session=False)
    )


async def _start(
    session: AsyncSession, job_ids: Sequence[uuid.UUID], worker: str, lease: float, now: datetime
) -> list[Claim]:
    token = uuid.uuid4()  # one per claim batch: (job id, token) is unique per claim
    rows = (await session.execute(claim_update(job_ids, worker, token, lease, now))).all()
    if rows:
        await session.execute(
            insert(JobAttempt),
            [
                {
                    "id": new_id(),
                    "job_id": r.id,
                    "number": r.runs,
                    "worker": worker,
                    "outcome": AttemptOutcome.running,
                    "started_at": now,
                }
                for r in rows
            ],
        )
    return [
        Claim(r.id, token, r.task, r.payload, r.attempts, r.runs, r.max_attempts, r.organization_id)
        for r in rows
    ]


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


# Per organization with pending jobs (NULL: jobs of none): since when its oldest is due, and
# how many of its jobs run. The organizations are found by skipping through the index on
# (status, organization_id, next_run_at), one seek each (a recursive "loose index scan"),
# so the cost grows with the organizations waiting, not with the jobs queued.
_WAITING = text(
    """
    WITH RECURSIVE waiting(organization_id) AS (
        SELECT (SELECT organization_id FROM jobs
                WHERE status = 'pending' AND organization_id IS NOT NULL
                ORDER BY organization_id LIMIT 1)
        UNION ALL
        SELECT (SELECT j.organization_id FROM jobs AS j
                WHERE j.status = 'pending' AND j.organization_id > w.organization_id
                ORDER BY j.organization_id LIMIT 1)
        FROM waiting AS w WHERE w.organization_id IS NOT NULL
    )
    SELECT w.organization_id,
           (SELECT min(j.next_run_at) FROM jobs AS j
            WHERE j.status = 'pending' AND j.organization_id = w.organization_id) AS oldest,
           (SELECT count(*) FROM jobs AS j
            WHERE j.status = 'running' AND j.organization_id = w.organization_id) AS running
    FROM waiting AS w WHERE w.organization_id IS NOT NULL
    UNION ALL
    SELECT NULL,
           (SELECT min(next_run_at) FROM jobs
            WHERE status = 'pending' AND organization_id IS NULL),
           (SELECT count(*) FROM jobs WHERE status = 'running' AND organization_id IS NULL)
    """
).columns(
    column("organization_id", Uuid()),
    column("oldest", UTCDateTime()),
    column("running", Integer()),
)


def due_jobs(organization_id: uuid.UUID | None, now: datetime, limit: int) -> Select[uuid.UUID]:
    """The ids of an organization's (None: of no organization's) oldest due jobs, locked
    (PostgreSQL skips those another worker is claiming). `=` or IS NULL, not IS NOT
    DISTINCT FROM, which PostgreSQL cannot look up in the index on (status, organization_id,
    next_run_at): for an organization it believed rare it read the whole table instead,
    finished jobs and all."""
    owner = (
        Job.organization_id.is_(None)
        if organization_id is None
        else Job.organization_id == organization_id
    )
    return (
        select(Job.id)
        .where(Job.status == JobStatus.pending, owner, Job.next_run_at <= now)
        .order_by(Job.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def claim_due(
    sessionmaker: Sessionmaker,
    worker: str,
    limit: int,
    lease: float,
    *,
    caps: fairness.Caps | None = None,
    running_here: Mapping[fairness.Tenant, int] | None = None,
    last_served: Mapping[fairness.Tenant, int] | None = None,
) -> list[Claim]:
    """Up to `limit` due jobs, shared between organizations by `fairness.share` (the fewest
    running first, within `caps`; `running_here` counts this process's running jobs and
    `last_served` says when it last claimed each organization's), each organization's
    oldest first. PostgreSQL skips rows other workers are claiming (SKIP LOCKED); SQLite
    transactions begin IMMEDIATE, so claims are serial."""
    caps = caps or fairness.Caps(per_process=limit)
    here = running_here or {}
    async with sessionmaker() as session, session.begin():
        connection = await session.connection()
        if caps.total is not None and connection.dialect.name == "postgresql":
            await session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
        rows = (await session.execute(_WAITING)).all()
        # Taken after the count: a job counted finished had its `finished_at` before this.
        now = utcnow()
        oldest_due = {r.organization_id: r.oldest for r in rows if r.oldest and r.oldest <= now}
        running_total = {r.organization_id: r.running for r in rows}
        candidates: dict[fairness.Tenant, list[uuid.UUID]] = {}
        for organization_id in fairness.in_line(
            oldest_due,
            limit,
            caps,
            running_total=running_total,
            running_here=here,
            last_served=last_served,
        ):
            candidates[organization_id] = list(
                (await session.scalars(due_jobs(organization_id, now, limit))).all()
            )
        shares = fairness.share(
            [
                fairness.Backlog(organization_id, len(ids), oldest_due[organization_id])
                for organization_id, ids in candidates.items()
            ],
            limit,
            caps,
            running_total=running_total,
            running_here=here,
            last_served=last_served,
        )
        job_ids = [
            job_id
            for organization_id, count in shares.items()
            for job_id in candidates[organization_id][:count]
        ]
        if not job_ids:
            return []
        return await _start(session, job_ids, worker, lease, now)


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
    writes: Sequence[SuccessWrite] = (),
) -> JobStatus | None:
    """Applies `decide` to the job if this claim still holds it; returns the new status.
    Retried through a short outage (a repeat after a lost acknowledgement finds the job
    no longer held and changes nothing)."""

    async def apply() -> JobStatus | None:
        async with sessionmaker() as session, session.begin():
            job = await session.scalar(select(Job).where(_still_held([claim])).with_for_update())
            now = utcnow()
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
                for write in writes:
                    await write(session)
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
            recorded = AttemptOutcome.cancelled if after.status is JobStatus.cancelled else outcome
            await session.execute(
                update(JobAttempt)
                .where(JobAttempt.job_id == job.id, JobAttempt.number == claim.run)
                .values(outcome=recorded, finished_at=now, error=error and error[:MAX_ERROR_LENGTH])
            )
            if after.status in states.GAVE_UP:
                await task_registry.gave_up(session, job)
            if after.status in (JobStatus.succeeded, JobStatus.dead):
                await notify_finished(session, job)
                await emit_all(
                    session, job_event(job.id, job.organization_id, job.task, after.status)
                )
            return after.status

    return await retrying_outage(apply, f"recording job {claim.job_id}")


def _still_held(claims: Sequence[Claim]) -> ColumnElement[bool]:
    """The running jobs these claims still hold."""
    return and_(
        Job.status == JobStatus.running,
        or_(*(and_(Job.id == c.job_id, Job.lease_token == c.token) for c in claims)),
    )


_JOBS = cast(Table, Job.__table__)
_ATTEMPTS = cast(Table, JobAttempt.__table__)


async def record_successes(
    sessionmaker: Sessionmaker, finished: Sequence[tuple[Claim, Any, Sequence[SuccessWrite]]]
) -> list[JobStatus | None]:
    """Several successes in one transaction (group commit): under load the executor's runners
    finish together, and one commit, one locking read and two multi-row updates for all of
    them cost about what one job's do. Written in Core: this is the executor's hot path.
    Each success's own writes (`TaskContext.with_success`) are made in it, for the jobs
    still held. Retried through a short outage."""
    return await retrying_outage(
        lambda: _record_successes(sessionmaker, finished), f"recording {len(finished)} successes"
    )


async def _record_successes(
    sessionmaker: Sessionmaker, finished: Sequence[tuple[Claim, Any, Sequence[SuccessWrite]]]
) -> list[JobStatus | None]:
    async with sessionmaker() as session, session.begin():
        claims = [claim for claim, _, _ in finished]
        held = {
            row.id: row
            for row in await session.execute(
                select(Job.id, Job.notify, Job.organization_id, Job.task)
                .where(_still_held(claims))
                .with_for_update()
            )
        }
        now = utcnow()
        mine = [(claim, result) for claim, result, _ in finished if claim.job_id in held]
        for claim, _, writes in finished:
            if claim.job_id in held:
                for write in writes:
                    await write(session)
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
            await emit_all(
                session,
                [
                    event
                    for claim, _ in mine
                    for event in job_event(
                        claim.job_id,
                        held[claim.job_id].organization_id,
                        held[claim.job_id].task,
                        "succeeded",
                    )
                ],
            )
    return [JobStatus.succeeded if claim.job_id in held else None for claim in claims]


async def record_success(
    sessionmaker: Sessionmaker,
    claim: Claim,
    result: Any,
    writes: Sequence[SuccessWrite] = (),
) -> JobStatus | None:
    return await _finish(
        sessionmaker, claim, states.succeed, AttemptOutcome.succeeded, result=result, writes=writes
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
