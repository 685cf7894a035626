"""The review inbox and the thread page: read what waits, decide on it."""

import itertools
import uuid
from collections.abc import Collection, Iterable
from typing import Any

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.console.auth import CheckedForm, CurrentUser, require
from tandem.console.diff import drafts_diff
from tandem.console.pages import Pager, pager_from
from tandem.console.web import ConsoleRoute, redirect, render
from tandem.db import SessionDep
from tandem.errors import Conflict, Invalid
from tandem.identity.models import User
from tandem.identity.principal import Principal
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.pagination import PageParams
from tandem.review import service
from tandem.review.kinds import ApprovalNotCarriedOut, get_kind
from tandem.review.states import GENERATING, Decision, ThreadStatus
from tandem.routing import Router
from tandem.scheduling import swaps

router = Router(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

KINDS = ("content", "swap")
PLATFORMS = ("linkedin", "twitter", "instagram", "blog")


def _choice(value: str | None, allowed: Collection[str]) -> str | None:
    return value if value is not None and value in allowed else None


async def user_names(
    session: AsyncSession, principal: Principal, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(
        select(User.id, User.full_name, User.email).where(
            User.id.in_(wanted), User.organization_id == principal.organization_id
        )
    )
    return {row.id: row.full_name or row.email for row in rows}


@router.get("/inbox")
async def inbox(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    require(user, Scope.review_read)
    kind = _choice(request.query_params.get("kind"), KINDS)
    platform = _choice(request.query_params.get("platform"), PLATFORMS)
    params = pager_from(request)
    rows, total = await service.list_pending(
        session, user.principal, params, kind=kind, platform=platform
    )
    items: list[dict[str, Any]] = [
        {
            "thread": thread,
            "count": len(drafts),
            "preview": get_kind(thread.kind).preview(drafts),
        }
        for thread, drafts in rows
    ]
    return render(
        request,
        "inbox.html",
        {
            "user": user,
            "items": items,
            "total": total,
            "kind": kind,
            "platform": platform,
            "kinds": KINDS,
            "platforms": PLATFORMS,
            "pager": Pager(request, params, total),
            "live_version": ",".join(str(thread.id) for thread, _ in rows) + f"|{total}",
        },
    )


async def _next_waiting(
    session: AsyncSession, principal: Principal, after: uuid.UUID
) -> uuid.UUID | None:
    rows, _ = await service.list_pending(session, principal, PageParams(limit=2))
    return next((thread.id for thread, _ in rows if thread.id != after), None)


@router.get("/threads/{thread_id}")
async def thread_page(
    thread_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    require(user, Scope.review_read)
    thread = await service.get_thread(session, user.principal, thread_id)
    history = await service.history(session, thread)
    revisions = list(history.revisions)
    current = next((r for r in revisions if r.number == thread.revision), None)
    changes: list[dict[str, Any]] = [
        {
            "revision": later,
            "previous": earlier,
            "diff": drafts_diff(list(earlier.drafts), list(later.drafts)),
        }
        for earlier, later in itertools.pairwise(revisions)
    ]
    names = await user_names(session, user.principal, (d.user_id for d in history.decisions))
    swap_check = None
    if thread.kind == swaps.SWAP_KIND and "swap_id" in thread.payload:
        swap, violations = await swaps.check_now(
            session, user.principal, uuid.UUID(thread.payload["swap_id"])
        )
        swap_check = {"swap": swap, "violations": violations}
    decided = request.query_params.get("notice") in {d.value for d in Decision}
    return render(
        request,
        "thread.html",
        {
            "user": user,
            "thread": thread,
            "drafts": list(current.drafts) if current else [],
            "revisions": list(reversed(revisions)),
            "changes": list(reversed(changes)),
            "decisions": history.decisions,
            "names": names,
            "swap_check": swap_check,
            "generating": thread.status in GENERATING,
            "can_decide": user.can(Scope.review_write)
            and thread.status is ThreadStatus.pending_review,
            "can_edit": thread.kind != swaps.SWAP_KIND,
            "next_id": await _next_waiting(session, user.principal, thread.id) if decided else None,
            "live_version": f"{thread.status.value}:{thread.revision}",
        },
    )


@router.post("/threads/{thread_id}/decision")
async def decide(
    thread_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    control: JobControlDep,
    form: CheckedForm,
) -> Response:
    require(user, Scope.review_write)
    try:
        decision = Decision(str(form.get("decision", "")))
        seen_revision = int(str(form.get("revision", "")))
    except ValueError:
        raise Invalid("The form must say which decision, on which revision") from None
    page = f"/ui/threads/{thread_id}"
    try:
        await service.decide(
            session,
            control,
            user.principal,
            thread_id,
            decision,
            str(form.get("feedback", "")),
            seen_revision=seen_revision,
        )
    except ApprovalNotCarriedOut:
        return redirect(f"{page}?notice=not-carried-out")  # its changes are kept (committed)
    except Conflict:
        await session.rollback()
        return redirect(f"{page}?notice=revised")
    except Invalid:
        if decision is not Decision.edit:
            raise
        await session.rollback()
        return redirect(f"{page}?notice=feedback-needed")
    return redirect(f"{page}?notice={decision.value}")
