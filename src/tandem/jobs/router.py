"""HTTP for jobs: submit, list (the dead-letter queue is `?status=dead`), read, retry, cancel."""

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import SessionDep, read_connection
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.jobs import service
from tandem.jobs.deps import JobControlDep
from tandem.jobs.models import Job, JobStatus
from tandem.jobs.schemas import AttemptOut, JobDetailOut, JobIn, JobOut, TaskOut
from tandem.pagination import Page, PageParamsDep
from tandem.ratelimit import PrincipalLimit, limit_principal
from tandem.routing import Router
from tandem.settings import Settings

router = Router(
    route_class=ApiRoute, prefix="/api/v1/jobs", tags=["jobs"], responses=error_responses(401, 403)
)

JobsReader = Annotated[Principal, Depends(require_scopes(Scope.jobs_read))]
JobsWriter = Annotated[Principal, Depends(require_scopes(Scope.jobs_write))]
# Validates the rows of a page (plain columns, read as attributes) in one pass.
JobsPage = Page[JobOut]


async def _detail(session: AsyncSession, job: Job) -> JobDetailOut:
    history = await service.attempt_history(session, job.id)
    return JobDetailOut(
        **JobOut.model_validate(job).model_dump(),
        cancel_requested=job.cancel_requested,
        attempt_history=[AttemptOut.model_validate(attempt) for attempt in history],
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": JobOut, "description": "The job first submitted with this key"},
        **error_responses(429),
    },
    dependencies=[Depends(limit_principal(PrincipalLimit("jobs", lambda s: s.rate_limit_jobs)))],
)
async def submit_job(
    body: JobIn,
    principal: JobsWriter,
    session: SessionDep,
    jobs: JobControlDep,
    request: Request,
    response: Response,
) -> JobOut:
    settings: Settings = request.app.state.settings
    job, created = await service.submit_job(
        session,
        jobs,
        task=body.task,
        payload=body.payload,
        organization_id=principal.organization_id,
        submitted_by_id=principal.user_id,
        max_attempts=body.max_attempts,
        notify=body.notify,
        idempotency_key=body.idempotency_key,
        public_only=True,
        max_payload_bytes=settings.job_max_payload_bytes,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return JobOut.model_validate(job)


@router.get("")
async def list_jobs(
    principal: JobsReader,
    request: Request,
    page: PageParamsDep,
    status_filter: Annotated[
        JobStatus | None,
        Query(alias="status", description="pending, running, succeeded, dead or cancelled"),
    ] = None,
    task: Annotated[str | None, Query(max_length=100)] = None,
) -> JobsPage:
    async with read_connection(request) as connection:
        rows, count = await service.list_job_rows(
            connection, principal, page, status=status_filter, task=task
        )
    return JobsPage.model_validate({"items": rows, "count": count})


@router.get("/tasks")
async def list_tasks(principal: JobsReader, jobs: JobControlDep) -> Page[TaskOut]:
    tasks = [TaskOut(name=t.name, description=t.description) for t in jobs.registry.public()]
    return Page(items=tasks, count=len(tasks))


@router.get("/{job_id}", responses=error_responses(404))
async def get_job(job_id: uuid.UUID, principal: JobsReader, request: Request) -> JobDetailOut:
    async with read_connection(request) as connection:
        job, attempts = await service.job_detail(connection, principal, job_id)
    return JobDetailOut.model_validate({**job, "attempt_history": attempts})


@router.post("/{job_id}/retry", responses=error_responses(404, 409))
async def retry_job(
    job_id: uuid.UUID, principal: JobsWriter, session: SessionDep, jobs: JobControlDep
) -> JobDetailOut:
    job = await service.retry_job(session, jobs, principal, job_id)
    return await _detail(session, job)


@router.post("/{job_id}/cancel", responses=error_responses(404, 409))
async def cancel_job(
    job_id: uuid.UUID, principal: JobsWriter, session: SessionDep, jobs: JobControlDep
) -> JobDetailOut:
    job = await service.cancel_job(session, jobs, principal, job_id)
    return await _detail(session, job)
