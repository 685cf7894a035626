"""Review threads: open, read, list the queue, and apply a reviewer's decision.

A decision is claimed with one guarded UPDATE (compare-and-set on status `pending_review`
and the revision the reviewer saw), never with a lock held across awaits: of two reviewers
deciding at once, exactly one update matches and the other gets a 409. The generation side
(`save_revision`, `fail_generation`) asks the state machine (`states.py`) what the end of a
generation leads to and writes it guarded the same way, on the status read and the revision
before the one being written, so a job that runs twice changes nothing the second time.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit import service as audit
from tandem.audit.service import AuditAction
from tandem.db import compare_and_set, utcnow
from tandem.errors import Conflict, Invalid
from tandem.identity.principal import Principal
from tandem.identity.projects import get_project
from tandem.jobs.service import JobControl
from tandem.notifications import review_digest
from tandem.pagination import PageParams, paginate
from tandem.quotas import enforce_quota
from tandem.review import states
from tandem.review.kinds import ApprovalNotCarriedOut, DecisionContext, Outcome, get_kind
from tandem.review.models import ReviewDecision, ReviewRevision, ReviewThread
from tandem.review.states import GENERATING, Decision, ReviewState, ThreadStatus
from tandem.tenancy import owned
from tandem.webhooks.schemas import Event
from tandem.webhooks.service import emit

# Threads counted by TANDEM_QUOTA_WAITING_THREADS: not decided yet.
WAITING = frozenset({*GENERATING, ThreadStatus.pending_review})


@dataclass(frozen=True)
class Decided:
    thread: ReviewThread
    message: str
    final_content: list[Any] | None


@dataclass(frozen=True)
class History:
    revisions: Sequence[ReviewRevision]
    decisions: Sequence[ReviewDecision]


async def check_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID | None
) -> None:
    if project_id is not None:
        await get_project(session, principal, project_id)


async def start_thread(
    session: AsyncSession,
    principal: Principal,
    *,
    kind: str,
    payload: dict[str, Any],
    platform: str | None = None,
    project_id: uuid.UUID | None = None,
    quota: int,
) -> ReviewThread:
    """A thread whose first drafts are still to be written (`generating`). The caller
    submits the job that writes them, in the same transaction, and sets `thread.job_id`.
    409 when the organization already has `quota` threads waiting for a decision."""
    get_kind(kind)
    await check_project(session, principal, project_id)
    await enforce_quota(
        session,
        ReviewThread,
        principal.organization_id,
        ReviewThread.status.in_(WAITING),
        limit=quota,
        what="review threads waiting for a decision",
        remedy="decide some first",
    )
    thread = ReviewThread(
        organization_id=principal.organization_id,
        project_id=project_id,
        created_by_id=principal.user_id,
        kind=kind,
        status=ThreadStatus.generating,
        platform=platform,
        revision=0,
        edit_count=0,
        payload=payload,
    )
    session.add(thread)
    await session.flush()
    return thread


async def open_thread(
    session: AsyncSession,
    principal: Principal,
    *,
    kind: str,
    drafts: list[Any],
    payload: dict[str, Any],
    platform: str | None = None,
    project_id: uuid.UUID | None = None,
    quota: int,
) -> ReviewThread:
    """A thread waiting for review at once (`pending_review`), `drafts` as revision 1: for a
    kind whose drafts need no agent, such as a swap. `drafts` and `payload` must be JSON."""
    thread = await start_thread(
        session,
        principal,
        kind=kind,
        payload=payload,
        platform=platform,
        project_id=project_id,
        quota=quota,
    )
    thread.status, thread.revision = ThreadStatus.pending_review, 1
    session.add(ReviewRevision(thread_id=thread.id, number=1, drafts=drafts))
    await session.flush()
    await _waits(session, thread)
    return thread


async def _waits(session: AsyncSession, thread: ReviewThread) -> None:
    """The thread has started waiting for a reviewer: say so (webhooks `review.pending`,
    reviewers' e-mail digest)."""
    data = {
        "thread_id": str(thread.id),
        "kind": thread.kind,
        "revision": thread.revision,
        "project_id": thread.project_id and str(thread.project_id),
    }
    await emit(session, thread.organization_id, Event.review_pending, data)
    await review_digest.thread_waits(session, thread)


async def get_thread(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID
) -> ReviewThread:
    return await owned(session, principal, ReviewThread, thread_id, "Thread")


async def history(session: AsyncSession, thread: ReviewThread) -> History:
    revisions = (
        await session.scalars(
            select(ReviewRevision)
            .where(ReviewRevision.thread_id == thread.id)
            .order_by(ReviewRevision.number)
        )
    ).all()
    decisions = (
        await session.scalars(
            select(ReviewDecision)
            .where(ReviewDecision.thread_id == thread.id)
            .order_by(ReviewDecision.revision)
        )
    ).all()
    return History(revisions, decisions)


async def drafts_of(session: AsyncSession, thread_id: uuid.UUID, revision: int) -> list[Any]:
    drafts = await session.scalar(
        select(ReviewRevision.drafts).where(
            ReviewRevision.thread_id == thread_id, ReviewRevision.number == revision
        )
    )
    return list(drafts or [])


async def feedback_on(session: AsyncSession, thread_id: uuid.UUID, revision: int) -> str | None:
    """What the reviewer asked for when they decided on `revision` (None: nothing)."""
    return await session.scalar(
        select(ReviewDecision.feedback).where(
            ReviewDecision.thread_id == thread_id, ReviewDecision.revision == revision
        )
    )


async def list_pending(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    kind: str | None = None,
    platform: str | None = None,
) -> tuple[list[tuple[ReviewThread, list[Any]]], int]:
    """Threads waiting for a decision, oldest first, each with its current drafts."""
    query = select(ReviewThread).where(
        ReviewThread.organization_id == principal.organization_id,
        ReviewThread.status == ThreadStatus.pending_review,
    )
    if kind is not None:
        query = query.where(ReviewThread.kind == kind)
    if platform is not None:
        query = query.where(ReviewThread.platform == platform)
    threads, total = await paginate(
        session, query.order_by(ReviewThread.created_at, ReviewThread.id), params
    )
    current = (
        await session.execute(
            select(ReviewRevision.thread_id, ReviewRevision.drafts)
            .join(
                ReviewThread,
                and_(
                    ReviewThread.id == ReviewRevision.thread_id,
                    ReviewThread.revision == ReviewRevision.number,
                ),
            )
            .where(ReviewThread.id.in_([thread.id for thread in threads]))
        )
    ).all()
    drafts = {row.thread_id: list(row.drafts) for row in current}
    return [(thread, drafts.get(thread.id, [])) for thread in threads], total


_DEFAULT_MESSAGES = {
    Decision.approve: "Thread approved: {count} draft(s) published",
    Decision.reject: "Thread rejected; the feedback is stored",
    Decision.edit: "Sent back with your feedback: revision {next} is being written",
}


async def decide(
    session: AsyncSession,
    jobs: JobControl,
    principal: Principal,
    thread_id: uuid.UUID,
    decision: Decision,
    feedback: str | None,
    *,
    seen_revision: int | None = None,
) -> Decided:
    """Applies one decision to the thread's current review round (see the module doc), or,
    when the reviewer names the revision they saw, to that round only."""
    feedback = (feedback or "").strip() or None
    if decision is Decision.edit and feedback is None:
        raise Invalid("edit needs feedback: say what should change", loc=("body", "feedback"))
    thread = await get_thread(session, principal, thread_id)
    seen = ReviewState(thread.status, thread.revision, thread.edit_count)
    try:
        after = states.decide(seen, decision)
    except states.IllegalTransition:
        raise Conflict(
            f"Thread {thread_id} is {seen.status.value}, not pending_review: "
            "it takes no decision now"
        ) from None
    if seen_revision is not None and seen_revision != seen.revision:
        raise Conflict(
            f"Thread {thread_id} is at revision {seen.revision}, not {seen_revision}: "
            "read its new drafts before deciding"
        )
    claimed = await compare_and_set(
        session,
        update(ReviewThread)
        .where(
            ReviewThread.id == thread_id,
            ReviewThread.status == ThreadStatus.pending_review,
            ReviewThread.revision == seen.revision,
        )
        .values(status=after.status, edit_count=after.edit_count, updated_at=utcnow()),
    )
    if not claimed:
        raise Conflict(
            f"Thread {thread_id} was decided by someone else while this request was handled"
        )
    session.add(
        ReviewDecision(
            thread_id=thread_id,
            revision=seen.revision,
            decision=decision,
            feedback=feedback,
            principal_kind=principal.kind.value,
            principal_id=principal.id,
            user_id=principal.user_id,
        )
    )
    await session.flush()
    await audit.record(
        session,
        AuditAction.review_decided,
        organization_id=principal.organization_id,
        actor=principal,
        target=("review_thread", thread_id),
        details={"decision": decision.value, "revision": seen.revision, "kind": thread.kind},
    )
    await session.refresh(thread)
    drafts = await drafts_of(session, thread_id, seen.revision)
    context = DecisionContext(session, jobs, principal, thread, drafts, feedback)
    kind = get_kind(thread.kind)
    outcome: Outcome
    if decision is Decision.approve:
        try:
            outcome = await kind.approve(context)
        except ApprovalNotCarriedOut as refused:
            thread.status = states.approval_not_carried_out(seen).status
            thread.error = refused.reason
            await session.flush()
            raise
        thread.final_content = (
            outcome.final_content if outcome.final_content is not None else drafts
        )
    elif decision is Decision.reject:
        outcome = await kind.reject(context)
    else:
        outcome = await kind.edit(context)
    if outcome.job_id is not None:
        thread.job_id = outcome.job_id
    await session.flush()
    data = {
        "thread_id": str(thread.id),
        "kind": thread.kind,
        "revision": seen.revision,
        "decision": decision.value,
        "status": thread.status.value,
    }
    await emit(session, thread.organization_id, Event.review_decided, data)
    message = outcome.message or _DEFAULT_MESSAGES[decision].format(
        count=len(drafts), next=seen.revision + 1
    )
    return Decided(thread, message, thread.final_content)


async def _generation_ends(
    session: AsyncSession,
    thread_id: uuid.UUID,
    revision: int,
    change: Callable[[ReviewState], ReviewState],
    **values: Any,
) -> bool:
    """Asks the state machine what the end of the generation writing `revision` leads to,
    and writes it guarded on the state read; False (nothing written) when that revision is
    not being written any more (already saved, failed, or the thread is gone)."""
    row = (
        await session.execute(
            select(ReviewThread.status, ReviewThread.revision, ReviewThread.edit_count).where(
                ReviewThread.id == thread_id
            )
        )
    ).one_or_none()
    if row is None or row.revision != revision - 1:
        return False
    before = ReviewState(row.status, row.revision, row.edit_count)
    try:
        after = change(before)
    except states.IllegalTransition:
        return False
    return await compare_and_set(
        session,
        update(ReviewThread)
        .where(
            ReviewThread.id == thread_id,
            ReviewThread.status == before.status,
            ReviewThread.revision == before.revision,
        )
        .values(status=after.status, revision=after.revision, updated_at=utcnow(), **values),
    )


async def save_revision(
    session: AsyncSession, thread_id: uuid.UUID, *, revision: int, drafts: list[Any]
) -> bool:
    """Stores `drafts` as `revision` and puts the thread up for review; False (and nothing
    written) when that revision is no longer being written (already saved, or failed)."""
    if not await _generation_ends(session, thread_id, revision, states.drafts_ready, error=None):
        return False
    session.add(ReviewRevision(thread_id=thread_id, number=revision, drafts=drafts))
    await session.flush()
    await _waits(session, await session.get_one(ReviewThread, thread_id))
    return True


async def fail_generation(
    session: AsyncSession, thread_id: uuid.UUID, *, revision: int, error: str
) -> bool:
    """The drafts of `revision` will not come: the thread fails with `error`."""
    return await _generation_ends(
        session, thread_id, revision, states.generation_failed, error=error[:4000]
    )


async def revive_generation(
    session: AsyncSession, thread_id: uuid.UUID, *, revision: int, job_id: uuid.UUID
) -> bool:
    """The generation job that failed the thread (writing `revision`) is retried: the thread
    waits for its drafts again. A thread failed otherwise, or gone, stays as it is."""
    after = states.generation_retried(ReviewState(ThreadStatus.failed, revision - 1))
    return await compare_and_set(
        session,
        update(ReviewThread)
        .where(
            ReviewThread.id == thread_id,
            ReviewThread.status == ThreadStatus.failed,
            ReviewThread.revision == revision - 1,
            ReviewThread.job_id == job_id,
        )
        .values(status=after.status, error=None, updated_at=utcnow()),
    )
