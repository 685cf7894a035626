"""HTTP for content: ask for drafts, list what was published."""

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request, status

from tandem.content import service
from tandem.content.models import ContentStatus
from tandem.content.schemas import ContentAcceptedOut, ContentCreateIn, ContentOut, ContentRequest
from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.pagination import Page, PageParamsDep
from tandem.ratelimit import PrincipalLimit, charge
from tandem.routing import Router
from tandem.settings import Settings

router = Router(
    route_class=ApiRoute,
    prefix="/api/content",
    tags=["content"],
    responses=error_responses(401, 403),
)

ContentCreator = Annotated[Principal, Depends(require_scopes(Scope.agent_run))]
ReviewReader = Annotated[Principal, Depends(require_scopes(Scope.review_read))]


# Counted in drafts, per user: a request for 50 drafts costs 50.
CONTENT_LIMIT = PrincipalLimit("content", lambda s: s.rate_limit_content)


@router.post(
    "/create", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(404, 409, 429)
)
async def create(
    body: ContentCreateIn,
    principal: ContentCreator,
    session: SessionDep,
    jobs: JobControlDep,
    http_request: Request,
) -> ContentAcceptedOut:
    """Drafts are written by the content-writer agent in a job; the thread then waits for
    review (`GET /api/hitl/{thread_id}`). Rate limited in drafts (`count`) per user."""
    await charge(http_request, principal, CONTENT_LIMIT, cost=body.count)
    request = ContentRequest.model_validate(body.model_dump(exclude={"project_id"}))
    settings: Settings = http_request.app.state.settings
    thread = await service.create_content(
        session, jobs, principal, request, body.project_id, quota=settings.quota_waiting_threads
    )
    assert thread.job_id is not None
    return ContentAcceptedOut(thread_id=thread.id, job_id=thread.job_id)


@router.get("")
async def list_content(
    principal: ReviewReader,
    session: SessionDep,
    params: PageParamsDep,
    status: ContentStatus | None = None,
    thread_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[ContentOut]:
    """Published content, newest first."""
    items, total = await service.list_content(
        session, principal, params, status=status, thread_id=thread_id
    )
    return Page(items=[ContentOut.model_validate(item) for item in items], count=total)
