"""E-mails about a job to whoever submitted it, when they asked (`notify: true`).

Each goes through the outbox with a dedupe key per job and event, so a job recorded twice
(a retried task, a re-run after a crash) still sends each e-mail once.
"""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import User
from tandem.jobs.models import Job, JobStatus
from tandem.notifications.service import enqueue_email


async def _send(session: AsyncSession, job: Job, event: str, subject: str, body: str) -> None:
    if not job.notify or job.submitted_by_id is None:
        return
    email = await session.scalar(select(User.email).where(User.id == job.submitted_by_id))
    if email is None:
        return
    await enqueue_email(
        session,
        to=email,
        subject=subject,
        body=body,
        organization_id=job.organization_id,
        dedupe_key=f"job:{job.id}:{event}",
    )


async def notify_submitted(session: AsyncSession, job: Job) -> None:
    await _send(
        session,
        job,
        "submitted",
        f"Job {job.id} submitted",
        f"Your job {job.id} ({job.task}) was submitted and will run shortly.\n",
    )


async def notify_finished(session: AsyncSession, job: Job) -> None:
    if job.status is JobStatus.succeeded:
        await _send(
            session,
            job,
            "succeeded",
            f"Job {job.id} succeeded",
            f"Your job {job.id} ({job.task}) succeeded after {job.attempts} attempt(s).\n",
        )
    elif job.status is JobStatus.dead:
        await _send(
            session,
            job,
            "failed",
            f"Job {job.id} failed",
            f"Your job {job.id} ({job.task}) failed after {job.attempts} attempt(s).\n"
            f"Last error: {job.last_error}\n"
            f"It is in the dead-letter queue; retry it with POST /api/v1/jobs/{job.id}/retry.\n",
        )
