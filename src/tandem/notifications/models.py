"""The outbox: every e-mail Tandem sends, with its delivery status."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, TimestampMixin, string_enum, utcnow


class OutboxStatus(StrEnum):
    pending = "pending"  # waiting for its first attempt or for a retry
    sent = "sent"  # accepted by the SMTP server
    logged = "logged"  # no SMTP configured: written to the log instead
    failed = "failed"  # gave up after the maximum number of attempts


class OutboxMessage(IdMixin, TimestampMixin, Base):
    __tablename__ = "outbox_messages"
    # The dispatcher's query: pending rows whose next attempt is due.
    __table_args__ = (
        Index("ix_outbox_messages_status_next_attempt_at", "status", "next_attempt_at"),
    )

    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))  # RFC 5322 line length limit
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(
        string_enum(OutboxStatus, length=16, check_name="status"),
        default=OutboxStatus.pending,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    # Callers that must not send the same e-mail twice (a re-run job) pass a key of their own.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
