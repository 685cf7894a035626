"""Content: start a thread whose drafts the content-writer agent writes, and the `content`
review kind (approve publishes the drafts, edit writes them again with the feedback)."""

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.content.models import ContentItem, ContentStatus
from tandem.content.schemas import ContentRequest
from tandem.db import utcnow
from tandem.identity.principal import Principal
from tandem.jobs.service import JobControl, submit_job
from tandem.pagination import PageParams, paginate
from tandem.review.kinds import DecisionContext, Outcome, ReviewKind
from tandem.review.models import ReviewThread
from tandem.review.service import start_thread

KIND = "content"
GENERATE_TASK = "content.generate"
# The model endpoint is retried inside each run; a job retry is for a worker that died or a
# model that stayed down for a while.
GENERATE_ATTEMPTS = 3


async def submit_generation(
    session: AsyncSession,
    jobs: JobControl,
    principal: Principal,
    thread: ReviewThread,
    revision: int,
) -> uuid.UUID:
    """Enqueues the job writing `revision` of the thread's drafts, in the caller's
    transaction, and makes it the thread's job."""
    job, _ = await submit_job(
        session,
        jobs,
        task=GENERATE_TASK,
        payload={"thread_id": str(thread.id), "revision": revision},
        organization_id=thread.organization_id,
        submitted_by_id=principal.user_id,
        max_attempts=GENERATE_ATTEMPTS,
    )
    thread.job_id = job.id
    await session.flush()
    return job.id


async def create_content(
    session: AsyncSession,
    jobs: JobControl,
    principal: Principal,
    request: ContentRequest,
    project_id: uuid.UUID | None,
    *,
    quota: int,
) -> ReviewThread:
    """`quota`: TANDEM_QUOTA_WAITING_THREADS."""
    thread = await start_thread(
        session,
        principal,
        kind=KIND,
        payload=request.model_dump(mode="json"),
        platform=request.platform,
        project_id=project_id,
        quota=quota,
    )
    await submit_generation(session, jobs, principal, thread, revision=1)
    return thread


async def list_content(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    status: ContentStatus | None = None,
    thread_id: uuid.UUID | None = None,
) -> tuple[Sequence[ContentItem], int]:
    query = select(ContentItem).where(ContentItem.organization_id == principal.organization_id)
    if status is not None:
        query = query.where(ContentItem.status == status)
    if thread_id is not None:
        query = query.where(ContentItem.thread_id == thread_id)
    order = (ContentItem.published_at.desc(), ContentItem.thread_id, ContentItem.position)
    return await paginate(session, query.order_by(*order), params)


class ContentReview(ReviewKind):
    name = KIND

    async def approve(self, decision: DecisionContext) -> Outcome:
        thread, now = decision.thread, utcnow()
        decision.session.add_all(
            ContentItem(
                organization_id=thread.organization_id,
                project_id=thread.project_id,
                thread_id=thread.id,
                revision=thread.revision,
                position=position,
                platform=thread.platform or "",
                body=str(body),
                status=ContentStatus.published,
                published_at=now,
                published_by_id=decision.principal.user_id,
            )
            for position, body in enumerate(decision.drafts)
        )
        await decision.session.flush()
        return Outcome(
            message=f"Thread approved: {len(decision.drafts)} post(s) published",
            final_content=decision.drafts,
        )

    async def edit(self, decision: DecisionContext) -> Outcome:
        revision = decision.thread.revision + 1
        job_id = await submit_generation(
            decision.session, decision.jobs, decision.principal, decision.thread, revision
        )
        return Outcome(
            message=f"Sent back with your feedback: revision {revision} is being written",
            job_id=job_id,
        )


content_review = ContentReview()
