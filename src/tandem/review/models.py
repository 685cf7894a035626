"""Review threads, one row per revision of their drafts, and one row per decision."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, TimestampMixin, string_enum, utcnow
from tandem.review.states import Decision, ThreadStatus


class ReviewThread(IdMixin, TimestampMixin, Base):
    """What waits for a person. `kind` picks the handler that acts on decisions (see
    `tandem.review.kinds`); it is plain text so that a new kind needs no migration."""

    __tablename__ = "review_threads"
    __table_args__ = (
        Index(
            "ix_review_threads_organization_id_status_created_at",
            "organization_id",
            "status",
            "created_at",
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL")
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # The job writing the current revision's drafts, if any.
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[ThreadStatus] = mapped_column(
        string_enum(ThreadStatus, check_name="status"), default=ThreadStatus.generating
    )
    platform: Mapped[str | None] = mapped_column(String(20))
    revision: Mapped[int] = mapped_column(Integer, default=0)
    edit_count: Mapped[int] = mapped_column(Integer, default=0)
    # What the kind needs to act: the content request, the swap to execute, ...
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    final_content: Mapped[list[Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class ReviewRevision(IdMixin, Base):
    """The drafts of one review round. (thread, number) is unique: a generation that runs
    twice (a retried job) cannot add the same revision twice."""

    __tablename__ = "review_revisions"
    __table_args__ = (UniqueConstraint("thread_id", "number"),)

    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("review_threads.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    drafts: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewDecision(IdMixin, Base):
    """Who decided what, when, on which revision. (thread, revision) is unique: exactly one
    decision per review round, whatever races the guarded update in the service lost."""

    __tablename__ = "review_decisions"
    __table_args__ = (UniqueConstraint("thread_id", "revision"),)

    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("review_threads.id", ondelete="CASCADE")
    )
    revision: Mapped[int] = mapped_column(Integer)
    decision: Mapped[Decision] = mapped_column(string_enum(Decision, check_name="decision"))
    feedback: Mapped[str | None] = mapped_column(Text)
    principal_kind: Mapped[str] = mapped_column(String(20))  # "user" or "api_key"
    principal_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
