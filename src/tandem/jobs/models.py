"""Jobs: the one source of truth for work that outlives a request."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, TimestampMixin, string_enum


class JobStatus(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    dead = "dead"  # every attempt failed: the dead-letter queue
    cancelled = "cancelled"


class AttemptOutcome(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    lease_expired = "lease_expired"  # the worker died or stalled: counts as a failed attempt
    cancelled = "cancelled"
    handed_back = "handed_back"  # graceful shutdown: does not use up the attempt budget


class Job(IdMixin, TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'dead', 'cancelled')", name="status"
        ),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempt_budget"),
        # The executors' claim queries: due pending jobs, oldest first; per organization.
        Index("ix_jobs_status_next_run_at", "status", "next_run_at"),
        Index(
            "ix_jobs_status_organization_id_next_run_at",
            "status",
            "organization_id",
            "next_run_at",
        ),
        # An organization's jobs, newest first (jobs.service.NEWEST_FIRST): the API's list.
        Index("ix_jobs_organization_id_created_at", "organization_id", "created_at", "id"),
    )

    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    submitted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    task: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[JobStatus] = mapped_column(string_enum(JobStatus), default=JobStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # within the current budget
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    runs: Mapped[int] = mapped_column(Integer, default=0)  # every attempt ever; numbers history
    next_run_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    # A fresh token per claim: the guard that keeps a worker that lost its lease from
    # recording anything over the work of the one that took over.
    lease_token: Mapped[uuid.UUID | None]
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    notify: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobAttempt(IdMixin, Base):
    """Append-only: one row per attempt, never rewritten once finished."""

    __tablename__ = "job_attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... across retries from dead
    worker: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[AttemptOutcome] = mapped_column(
        string_enum(AttemptOutcome), default=AttemptOutcome.running
    )
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
