"""The jobs pages: counts by status, the filtered list, one job with its attempts; retry and
cancel (one job, or several dead ones at once)."""

import json
import uuid
from typing import Any, Literal

from fastapi import Request, Response

from tandem.console.auth import CheckedForm, ConsoleUser, CurrentUser, require
from tandem.console.pages import Pager, pager_from
from tandem.console.web import ConsoleRoute, redirect, render
from tandem.db import SessionDep
from tandem.errors import Conflict, Forbidden, NotFound
from tandem.identity.scopes import Scope
from tandem.jobs import service
from tandem.jobs.deps import JobControlDep
from tandem.jobs.models import Job, JobStatus
from tandem.jobs.registry import UnknownTask
from tandem.jobs.service import JobControl
from tandem.routing import Router

router = Router(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

RETRYABLE = frozenset({JobStatus.dead, JobStatus.cancelled})
CANCELLABLE = frozenset({JobStatus.pending, JobStatus.running})
LIVE = frozenset({JobStatus.pending, JobStatus.running})


def may_control(user: ConsoleUser, control: JobControl, job: Job) -> bool:
    """What the API allows: jobs:write, plus the scopes the job's task asks to be controlled."""
    if not user.can(Scope.jobs_write):
        return False
    try:
        needed = control.registry.get(job.task).control_scopes
    except UnknownTask:
        return True
    return all(user.can(scope) for scope in needed)


def _status(value: str | None) -> JobStatus | None:
    try:
        return JobStatus(value) if value else None
    except ValueError:
        return None


def _count(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() else None


@router.get("/jobs")
async def jobs_page(
    request: Request, user: CurrentUser, session: SessionDep, control: JobControlDep
) -> Response:
    require(user, Scope.jobs_read)
    status = _status(request.query_params.get("status"))
    task = request.query_params.get("task") or None
    tasks = control.registry.names()
    if task not in tasks:
        task = None
    params = pager_from(request)
    jobs, total = await service.list_jobs(session, user.principal, params, status=status, task=task)
    counts = await service.counts_by_status(session, user.principal)
    retryable = [
        job.id for job in jobs if job.status in RETRYABLE and may_control(user, control, job)
    ]
    return render(
        request,
        "jobs.html",
        {
            "user": user,
            "jobs": jobs,
            "total": total,
            "counts": counts,
            "status": status,
            "statuses": list(JobStatus),
            "task": task,
            "tasks": tasks,
            "retryable": set(retryable),
            "pager": Pager(request, params, total),
            "retried": _count(request, "retried"),
            "skipped": _count(request, "skipped"),
            "live_version": "|".join(f"{j.id}:{j.status.value}:{j.attempts}" for j in jobs)
            + "|"
            + ",".join(str(counts[s]) for s in JobStatus),
        },
    )


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@router.get("/jobs/{job_id}")
async def job_page(
    job_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    control: JobControlDep,
) -> Response:
    require(user, Scope.jobs_read)
    job = await service.get_job(session, user.principal, job_id)
    attempts = await service.attempt_history(session, job.id)
    allowed = may_control(user, control, job)
    return render(
        request,
        "job.html",
        {
            "user": user,
            "job": job,
            "attempts": attempts,
            "payload": _json(job.payload),
            "result": None if job.result is None else _json(job.result),
            "can_retry": allowed and job.status in RETRYABLE,
            "can_cancel": allowed and job.status in CANCELLABLE and not job.cancel_requested,
            "live": job.status in LIVE,
            "live_version": f"{job.status.value}:{job.runs}:{job.cancel_requested}",
        },
    )


_ACTIONS = {
    "retry": (service.retry_job, "retried"),
    "cancel": (service.cancel_job, "cancelled"),
}


@router.post("/jobs/{job_id}/{action}")
async def act(
    job_id: uuid.UUID,
    action: Literal["retry", "cancel"],
    user: CurrentUser,
    session: SessionDep,
    control: JobControlDep,
    _: CheckedForm,
) -> Response:
    """ "Retry" or "Cancel" on a job's page; a job changed meanwhile is shown as it is now."""
    require(user, Scope.jobs_write)
    change, notice = _ACTIONS[action]
    try:
        await change(session, control, user.principal, job_id)
    except Conflict:
        await session.rollback()
        notice = "job-changed"
    return redirect(f"/ui/jobs/{job_id}?notice={notice}")


@router.post("/jobs/retry")
async def retry_selected(
    user: CurrentUser, session: SessionDep, control: JobControlDep, form: CheckedForm
) -> Response:
    """Each selected job in a savepoint of its own: one that cannot be retried (changed
    meanwhile, or not the user's to control) is skipped, the others go back to the queue."""
    require(user, Scope.jobs_write)
    retried = skipped = 0
    for raw in form.getlist("job_id"):
        try:
            job_id = uuid.UUID(str(raw))
            async with session.begin_nested():
                await service.retry_job(session, control, user.principal, job_id)
        except (ValueError, Conflict, NotFound, Forbidden):
            skipped += 1
        else:
            retried += 1
    return redirect(f"/ui/jobs?status=dead&retried={retried}&skipped={skipped}")
