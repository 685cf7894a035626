"""Recording security events (in the caller's transaction) and reading them back.

`record` adds the row to the session of the change it describes, so the event commits or
rolls back with it; an event that must outlive a failing request (a failed login, a reused
refresh token) is raised with an error that keeps its changes. Every event is also one
structured log line (logger `tandem.audit`), which is where events without an organization
(a failed login for an unknown address) can be read.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit.models import AuditEvent
from tandem.identity.principal import Principal, PrincipalKind
from tandem.observability import client_address_var, request_id_var
from tandem.pagination import PageParams, paginate

log = logging.getLogger("tandem.audit")


class AuditAction(StrEnum):
    login = "login"
    refresh_token_reused = "refresh_token.reused"
    user_role_changed = "user.role_changed"
    user_status_changed = "user.status_changed"
    api_key_created = "api_key.created"
    api_key_revoked = "api_key.revoked"
    project_deleted = "project.deleted"
    person_deleted = "person.deleted"
    schedule_deleted = "schedule.deleted"
    review_decided = "review.decided"
    invitation_created = "invitation.created"
    invitation_accepted = "invitation.accepted"
    email_verified = "email.verified"
    password_reset_requested = "password_reset.requested"
    password_reset = "password_reset.completed"


class Outcome(StrEnum):
    success = "success"
    failure = "failure"


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID | None
    key_id: uuid.UUID | None = None

    @classmethod
    def of(cls, principal: Principal) -> "Actor":
        key = principal.id if principal.kind is PrincipalKind.api_key else None
        return cls(principal.user_id, key)


async def record(
    session: AsyncSession,
    action: AuditAction,
    *,
    organization_id: uuid.UUID | None,
    actor: Actor | Principal | None = None,
    target: tuple[str, uuid.UUID | str] | None = None,
    outcome: Outcome = Outcome.success,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    who = Actor.of(actor) if isinstance(actor, Principal) else actor or Actor(None)
    event = AuditEvent(
        organization_id=organization_id,
        action=action.value,
        outcome=outcome.value,
        actor_id=who.user_id,
        actor_key_id=who.key_id,
        target_type=target[0] if target else None,
        target_id=str(target[1]) if target else None,
        client_address=client_address_var.get(),
        request_id=request_id_var.get(),
        details=details,
    )
    session.add(event)
    await session.flush()
    fields = {
        "action": event.action,
        "outcome": event.outcome,
        "organization_id": _text(event.organization_id),
        "actor_id": _text(event.actor_id),
        "actor_key_id": _text(event.actor_key_id),
        "target": f"{event.target_type}:{event.target_id}" if target else None,
        "client_address": event.client_address,
        "details": details,
    }
    log.info(
        "audit %s %s",
        event.action,
        " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k != "action"),
        extra={"audit": fields},
    )
    return event


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


async def list_events(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    action: str | None = None,
    actor_id: uuid.UUID | None = None,
    outcome: Outcome | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Sequence[AuditEvent], int]:
    """The caller's organization's events, newest first."""
    query = select(AuditEvent).where(AuditEvent.organization_id == principal.organization_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome.value)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    query = query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    return await paginate(session, query, params)
