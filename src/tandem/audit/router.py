"""GET /api/v1/audit: the organization's audit trail, for admins."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict

from tandem.audit.service import AuditAction, Outcome, list_events
from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.pagination import Page, PageParamsDep
from tandem.routing import Router

router = Router(
    route_class=ApiRoute, prefix="/api/v1", tags=["audit"], responses=error_responses(401, 403)
)
UsersAdmin = Annotated[Principal, Depends(require_scopes(Scope.users_admin))]


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    action: str
    outcome: Outcome
    actor_id: uuid.UUID | None
    actor_key_id: uuid.UUID | None
    target_type: str | None
    target_id: str | None
    client_address: str | None
    request_id: str | None
    details: dict[str, Any] | None


@router.get("/audit")
async def audit_trail(
    principal: UsersAdmin,
    session: SessionDep,
    page: PageParamsDep,
    action: AuditAction | None = None,
    actor_id: uuid.UUID | None = None,
    outcome: Outcome | None = None,
    since: Annotated[AwareDatetime | None, Query(description="From this time on")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before this time")] = None,
) -> Page[AuditEventOut]:
    """Security events of your organization, newest first."""
    events, count = await list_events(
        session,
        principal,
        page,
        action=action.value if action else None,
        actor_id=actor_id,
        outcome=outcome,
        since=since,
        until=until,
    )
    return Page(items=[AuditEventOut.model_validate(e) for e in events], count=count)
