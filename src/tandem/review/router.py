"""HTTP for the review queue: list what waits, read a thread, decide."""

import uuid
from typing import Annotated

from fastapi import Depends, Query

from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.pagination import Page, PageParamsDep
from tandem.review import service
from tandem.review.kinds import get_kind
from tandem.review.models import ReviewThread
from tandem.review.schemas import (
    DecidedBy,
    DecisionOut,
    FeedbackOut,
    PendingOut,
    ResumeIn,
    ResumeOut,
    RevisionOut,
    ThreadOut,
)
from tandem.routing import Router

router = Router(
    route_class=ApiRoute, prefix="/api/hitl", tags=["review"], responses=error_responses(401, 403)
)

ReviewReader = Annotated[Principal, Depends(require_scopes(Scope.review_read))]
ReviewWriter = Annotated[Principal, Depends(require_scopes(Scope.review_write))]


@router.get("/pending")
async def pending(
    principal: ReviewReader,
    session: SessionDep,
    params: PageParamsDep,
    kind: Annotated[str | None, Query(max_length=20, description="content or swap")] = None,
) -> Page[PendingOut]:
    """Threads waiting for a decision, oldest first."""
    rows, total = await service.list_pending(session, principal, params, kind=kind)
    items = [
        PendingOut(
            thread_id=thread.id,
            kind=thread.kind,
            platform=thread.platform,
            content_count=len(drafts),
            edit_count=thread.edit_count,
            created_at=thread.created_at,
            preview=get_kind(thread.kind).preview(drafts),
        )
        for thread, drafts in rows
    ]
    return Page(items=items, count=total)


@router.post("/resume", responses=error_responses(404, 409))
async def resume(
    body: ResumeIn, principal: ReviewWriter, session: SessionDep, jobs: JobControlDep
) -> ResumeOut:
    """approve publishes, reject closes with the feedback, edit writes the drafts again."""
    decided = await service.decide(
        session,
        jobs,
        principal,
        body.thread_id,
        body.decision,
        body.feedback,
        seen_revision=body.revision,
    )
    return ResumeOut(
        thread_id=decided.thread.id,
        status=decided.thread.status,
        message=decided.message,
        final_content=decided.final_content,
    )


@router.get("/{thread_id}", responses=error_responses(404))
async def get_thread(
    thread_id: uuid.UUID, principal: ReviewReader, session: SessionDep
) -> ThreadOut:
    """The thread with its drafts, every revision, the feedback and the decisions."""
    thread = await service.get_thread(session, principal, thread_id)
    history = await service.history(session, thread)
    return _thread_out(thread, history)


def _thread_out(thread: ReviewThread, history: service.History) -> ThreadOut:
    current = next((r for r in history.revisions if r.number == thread.revision), None)
    return ThreadOut(
        thread_id=thread.id,
        kind=thread.kind,
        status=thread.status,
        platform=thread.platform,
        project_id=thread.project_id,
        revision=thread.revision,
        edit_count=thread.edit_count,
        drafts=list(current.drafts) if current else [],
        request=thread.payload,
        final_content=thread.final_content,
        error=thread.error,
        job_id=thread.job_id,
        feedback=[
            FeedbackOut(
                revision=d.revision,
                decision=d.decision,
                feedback=d.feedback,
                user_id=d.user_id,
                created_at=d.created_at,
            )
            for d in history.decisions
            if d.feedback
        ],
        decisions=[
            DecisionOut(
                revision=d.revision,
                decision=d.decision,
                feedback=d.feedback,
                decided_by=DecidedBy(kind=d.principal_kind, id=d.principal_id, user_id=d.user_id),
                decided_at=d.created_at,
            )
            for d in history.decisions
        ],
        revisions=[
            RevisionOut(revision=r.number, drafts=list(r.drafts), created_at=r.created_at)
            for r in history.revisions
        ],
        created_at=thread.created_at,
        updated_at=thread.updated_at,
    )
