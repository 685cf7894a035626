"""Jobs as the API sees them: submit, read, list, retry from the dead-letter queue, cancel."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.db import READ_ONLY, ReadConnection, compare_and_set, insert_row, new_id, utcnow
from tandem.errors import Conflict, Invalid
from tandem.identity.principal import Principal
from tandem.identity.scopes import Scope
from tandem.jobs import states
from tandem.jobs.claims import claimed_at_submit
from tandem.jobs.dispatch import Dispatch
from tandem.jobs.models import Job, JobAttempt, JobStatus
from tandem.jobs.notify import notify_submitted
from tandem.jobs.registry import TaskDefinition, TaskRegistry, UnknownTask
from tandem.jobs.sizes import check_payload_size
from tandem.pagination import (
    ColumnsPage,
    ColumnsRow,
    PageParams,
    columns_page,
    paginate,
    paginate_columns,
)
from tandem.tenancy import owned, owned_columns, owned_rows

if TYPE_CHECKING:
    from tandem.jobs.executor import Executor, HeldSlot

# A job an executor is claiming or finishing changes under a cancel at most this often.
CANCEL_TRIES = 3


@dataclass(frozen=True)
class JobControl:
    """What submitting, retrying and cancelling jobs needs: the known tasks (their hooks
    and scopes included) and the dispatch that tells executors a job is runnable."""

    registry: TaskRegistry
    dispatch: Dispatch
    # This process's embedded executor (None: jobs run elsewhere): a submitter that waits for
    # its job may hold one of its slots and submit the job already claimed (`hold_slot`).
    executor: "Executor | None" = None


async def submit_job(
    session: AsyncSession,
    jobs: JobControl,
    *,
    task: str,
    payload: dict[str, Any],
    organization_id: uuid.UUID | None,
    submitted_by_id: uuid.UUID | None = None,
    max_attempts: int = 3,
    notify: bool = False,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    public_only: bool = False,
    max_payload_bytes: int | None = None,
    held: "HeldSlot | None" = None,
) -> tuple[Job, bool]:
    """Adds the job to the caller's transaction: it becomes runnable when that commits.

    Returns the job and whether it is new; the same idempotency key in the same organization
    returns the first job instead (also when two requests race with it). A new job is a
    record of the row written (`db.insert_row`), not an object of the session: change the
    row with an UPDATE. `public_only` (submissions by name, from the API) refuses internal
    tasks as if they did not exist; `max_payload_bytes` bounds the payload as JSON (422
    beyond). With `held` (a slot of this process's executor), a new job due now without an
    idempotency key is inserted already claimed for that slot instead of pending
    (`held.claim`; the caller starts it once the transaction commits).
    """
    try:
        definition = jobs.registry.get(task)
        if public_only and not definition.public:
            raise UnknownTask(task)
    except UnknownTask:
        known = ", ".join(
            d.name for d in (jobs.registry.public() if public_only else jobs.registry)
        )
        raise Invalid(
            f"Unknown task '{task}'. Known tasks: {known}", loc=("body", "task")
        ) from None
    if max_payload_bytes is not None:
        check_payload_size(payload, max_payload_bytes)
    payload = definition.validated_payload(payload)
    if idempotency_key is not None:
        existing = await _by_idempotency_key(session, organization_id, idempotency_key)
        if existing is not None:
            return existing, False
    now = utcnow()
    job = Job(
        id=new_id(),
        organization_id=organization_id,
        submitted_by_id=submitted_by_id,
        task=task,
        payload=payload,
        status=JobStatus.pending,
        attempts=0,
        runs=0,
        max_attempts=max_attempts,
        next_run_at=run_at or now,
        notify=notify,
        idempotency_key=idempotency_key,
        cancel_requested=False,
        lease_owner=None,
        lease_token=None,
        lease_expires_at=None,
        last_error=None,
        result=None,
        started_at=None,
        finished_at=None,
        created_at=now,
        updated_at=now,
    )
    first_attempt = None
    if held is not None and idempotency_key is None and job.next_run_at <= now:
        held.claim, first_attempt = claimed_at_submit(job, held.worker, held.lease, now)
    if idempotency_key is None:
        # Nothing unique but the new id to conflict with: no savepoint around the insert.
        await insert_row(session, job)
        if first_attempt is not None:
            await insert_row(session, first_attempt)
    else:
        try:
            async with session.begin_nested():
                await insert_row(session, job)
        except IntegrityError:
            existing = await _by_idempotency_key(session, organization_id, idempotency_key)
            if existing is None:
                raise
            return existing, False
    if held is None or held.claim is None:
        await jobs.dispatch.enqueue(session, job.id, job.next_run_at)
    await notify_submitted(session, job)
    return job, True


async def _by_idempotency_key(
    session: AsyncSession, organization_id: uuid.UUID | None, key: str | None
) -> Job | None:
    return await session.scalar(
        select(Job).where(Job.organization_id == organization_id, Job.idempotency_key == key)
    )


async def get_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> Job:
    return await owned(session, principal, Job, job_id, "Job")


# The API's reads (GET /jobs, GET /jobs/{id}) as plain columns, their statements built once:
# the fields of JobOut, JobDetailOut and AttemptOut, under the names those models read.
JOB_COLUMNS = (
    Job.id,
    Job.task,
    Job.status,
    Job.attempts,
    Job.max_attempts,
    Job.payload,
    Job.result,
    Job.last_error,
    Job.created_at,
    Job.updated_at,
    Job.next_run_at,
)
# A job and its attempts, oldest first, in one statement: the job outer-joined to its attempts
# (a job not yet run gives one row of NULL attempt columns). The columns that may be large
# (payload, result, last error) are read on the first row only, NULL on the others: a job
# retried from dead many times does not send its payload once per attempt.
_ON_FIRST_ROW = func.row_number().over(order_by=JobAttempt.number) == 1
_LARGE_COLUMNS = {Job.payload.key, Job.result.key, Job.last_error.key}
_ATTEMPT_COLUMNS = (
    JobAttempt.number,
    JobAttempt.started_at,
    JobAttempt.finished_at,
    JobAttempt.error,
    JobAttempt.outcome,
    JobAttempt.worker,
)
_JOB_DETAIL = owned_columns(
    Job,
    "Job",
    *(
        case((_ON_FIRST_ROW, column)).label(column.key) if column.key in _LARGE_COLUMNS else column
        for column in JOB_COLUMNS
    ),
    Job.cancel_requested,
    *_ATTEMPT_COLUMNS,
)
_JOB_DETAIL = replace(
    _JOB_DETAIL,
    statement=_JOB_DETAIL.statement.select_from(Job)
    .outerjoin(JobAttempt, JobAttempt.job_id == Job.id)
    .order_by(JobAttempt.number),
)
# Each row: the job's columns (JOB_COLUMNS and cancel_requested), then the attempt's.
_ATTEMPT_FROM = len(JOB_COLUMNS) + 1


async def job_detail(
    connection: ReadConnection, principal: Principal, job_id: uuid.UUID
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job (`JOB_COLUMNS` and `cancel_requested`, by name; 404 unless it is of the
    principal's organization) and its attempts, oldest first (`AttemptOut`'s fields)."""
    rows = await owned_rows(connection, principal, _JOB_DETAIL, job_id)
    fields, first = rows[0]._fields, rows[0]
    job = dict(zip(fields[:_ATTEMPT_FROM], first[:_ATTEMPT_FROM], strict=True))
    attempts = [
        dict(zip(fields[_ATTEMPT_FROM:], row[_ATTEMPT_FROM:], strict=True))
        for row in rows
        if row.number is not None
    ]
    return job, attempts


async def attempt_history(session: AsyncSession, job_id: uuid.UUID) -> Sequence[JobAttempt]:
    return (
        await session.scalars(
            select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.number)
        )
    ).all()


# An organization's jobs, newest first: read backwards along ix_jobs_organization_id_created_at,
# a page costs its own rows, not a sort of every job the organization ever submitted.
NEWEST_FIRST = (Job.created_at.desc(), Job.id.desc())


def _jobs_page(*, by_status: bool, by_task: bool) -> ColumnsPage:
    query = select(*JOB_COLUMNS).where(Job.organization_id == bindparam("organization_id"))
    if by_status:
        query = query.where(Job.status == bindparam("status"))
    if by_task:
        query = query.where(Job.task == bindparam("task"))
    return columns_page(query.order_by(*NEWEST_FIRST))


# One statement for each combination of filters.
_JOBS_PAGES = {
    (by_status, by_task): _jobs_page(by_status=by_status, by_task=by_task)
    for by_status in (False, True)
    for by_task in (False, True)
}


async def list_job_rows(
    connection: ReadConnection,
    principal: Principal,
    params: PageParams,
    *,
    status: JobStatus | None = None,
    task: str | None = None,
) -> tuple[Sequence[ColumnsRow], int]:
    """`list_jobs` as rows of `JOB_COLUMNS`, for the API."""
    page = _JOBS_PAGES[status is not None, task is not None]
    values = {"organization_id": principal.organization_id, "status": status, "task": task}
    return await paginate_columns(connection, page, params, values)


async def list_jobs(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    status: JobStatus | None = None,
    task: str | None = None,
) -> tuple[Sequence[Job], int]:
    query = select(Job).where(Job.organization_id == principal.organization_id)
    if status is not None:
        query = query.where(Job.status == status)
    if task is not None:
        query = query.where(Job.task == task)
    return await paginate(session, query.order_by(*NEWEST_FIRST), params)


# A count per status, each along the index on (status, organization_id, ...): a GROUP BY
# status read every job the organization ever had, row by row (benchmarks.md, tenth pass).
COUNTS_BY_STATUS = select(
    *(
        select(func.count())
        .where(Job.status == job_status, Job.organization_id == bindparam("organization_id"))
        .scalar_subquery()
        .label(job_status.value)
        for job_status in JobStatus
    )
)


async def counts_by_status(session: AsyncSession, principal: Principal) -> dict[JobStatus, int]:
    """How many of the organization's jobs are in each status (every status, zeros too)."""
    counts = (
        await session.execute(COUNTS_BY_STATUS, {"organization_id": principal.organization_id})
    ).one()
    return {job_status: counts._mapping[job_status.value] for job_status in JobStatus}


async def _transition(
    session: AsyncSession,
    job: Job,
    change: Any,
    values: dict[str, Any],
) -> Job:
    """Applies a state change with an update guarded on the state read: of two racing
    requests, the second finds the state changed and gets a 409."""
    before = states.JobState(job.status, job.attempts, job.max_attempts, job.cancel_requested)
    try:
        after: states.JobState = change(before)
    except states.IllegalTransition as exc:
        raise Conflict(str(exc)) from exc
    changed = await compare_and_set(
        session,
        update(Job)
        .where(Job.id == job.id, Job.status == before.status, Job.runs == job.runs)
        .values(
            status=after.status,
            attempts=after.attempts,
            cancel_requested=after.cancel_requested,
            updated_at=utcnow(),
            **values,
        ),
    )
    if not changed:
        raise Conflict(f"Job {job.id} changed while this request was handled; try again")
    await session.refresh(job)
    return job


async def retry_job(
    session: AsyncSession, jobs: JobControl, principal: Principal, job_id: uuid.UUID
) -> Job:
    """A dead or cancelled job goes back to pending with a fresh budget; history is kept."""
    job = await get_job(session, principal, job_id)
    task = _may_control(jobs, principal, job)
    now = utcnow()
    job = await _transition(session, job, states.retry, {"next_run_at": now, "finished_at": None})
    if task is not None and task.on_retry is not None:
        await task.on_retry(session, job.id, job.payload)
    await jobs.dispatch.enqueue(session, job.id, now)
    return job


def _task_of(jobs: JobControl, job: Job) -> TaskDefinition | None:
    """The job's task, or None for one no longer in the code (the job fails when it runs)."""
    try:
        return jobs.registry.get(job.task)
    except UnknownTask:
        return None


def _may_control(jobs: JobControl, principal: Principal, job: Job) -> TaskDefinition | None:
    """403 unless the principal may retry or cancel the job: its submitter, or a holder of
    jobs:admin (a job no one submitted, too), with what its task asks beyond that. Returns
    the job's task (None for one no longer in the code)."""
    task = _task_of(jobs, job)
    if task is not None:
        principal.require(*task.control_scopes)
    if job.submitted_by_id is None or job.submitted_by_id != principal.user_id:
        principal.require(Scope.jobs_admin)
    return task


async def cancel_job(
    session: AsyncSession, jobs: JobControl, principal: Principal, job_id: uuid.UUID
) -> Job:
    """Pending: cancelled now. Running: cancellation requested; the executor stops it (one
    in this process as soon as the request commits, others at their next heartbeat)."""
    job = await get_job(session, principal, job_id)
    _may_control(jobs, principal, job)
    return await _cancel(session, jobs, job)


async def cancel_unfinished(session: AsyncSession, jobs: JobControl, job_id: uuid.UUID) -> None:
    """Cancels the job unless it has finished: what it worked for is gone (a deleted
    schedule). The caller has decided; nothing is checked against a principal. An executor
    claiming or finishing the job meanwhile is not a conflict: read it again and retry."""
    for _ in range(CANCEL_TRIES):
        job = await session.get(Job, job_id, populate_existing=True)
        if job is None or job.status in states.FINISHED:
            return
        try:
            await _cancel(session, jobs, job)
        except Conflict:
            continue
        return
    raise Conflict(f"Job {job_id} kept changing; try again")


async def _cancel(session: AsyncSession, jobs: JobControl, job: Job) -> Job:
    finishing = {"finished_at": utcnow()} if job.status is JobStatus.pending else {}
    job = await _transition(session, job, states.cancel, finishing)
    if job.status is JobStatus.running:
        await jobs.dispatch.cancel(session, job.id)
    else:
        await jobs.registry.gave_up(session, job)
    return job


async def count_jobs_by_status(
    sessionmaker: async_sessionmaker[AsyncSession], metrics: Any
) -> None:
    """Refreshes the jobs-by-status gauge (called when /metrics is scraped)."""
    async with sessionmaker() as session:
        await session.connection(execution_options=READ_ONLY)
        counts = dict(
            (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
        )
    for job_status in JobStatus:
        metrics.by_status.labels(job_status.value).set(counts.get(job_status, 0))
