"""Audit events: who did what, to what, when, from where, and how it ended."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, utcnow


class AuditEvent(IdMixin, Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_organization_created", "organization_id", "created_at"),
    )

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # None for what belongs to no organization (a failed login for an unknown e-mail).
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    action: Mapped[str] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(20))
    # The user who acted (for an API key, the user who created it) and the key, if one was used.
    actor_id: Mapped[uuid.UUID | None]
    actor_key_id: Mapped[uuid.UUID | None]
    target_type: Mapped[str | None] = mapped_column(String(30))
    target_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
