"""Scheduling data: people, absences, blocks, rotations, schedules, assignments and swaps.

The enums are the shared vocabulary of `domain.py`, stored as their plain values, so a row
turns into a domain object without translation (`problem.load_problem`).
"""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, TimestampMixin, string_enum
from tandem.scheduling.domain import (
    DEFAULT_HOURS_PER_BLOCK,
    AssignmentRole,
    CallKind,
    MoonlightingKind,
    PersonType,
    RotationKind,
    TimeOfDay,
)


class ScheduleStatus(StrEnum):
    draft = "draft"
    generating = "generating"
    generated = "generated"
    published = "published"
    failed = "failed"


class SwapStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    invalidated = "invalidated"  # the schedule changed under it before approval
    withdrawn = "withdrawn"  # one of the two people (or a coordinator) took it back


class SwapKind(StrEnum):
    give_away = "give_away"  # the counterpart takes the assignment
    exchange = "exchange"  # the two trade: each takes the other's assignment


def _org_fk() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)


class Person(IdMixin, TimestampMixin, Base):
    __tablename__ = "people"
    __table_args__ = (
        # One person per e-mail in an organization; two racing creates cannot both win.
        UniqueConstraint("organization_id", "email"),
        CheckConstraint("pgy_level IS NULL OR (pgy_level >= 1 AND pgy_level <= 3)", name="pgy"),
    )

    organization_id: Mapped[uuid.UUID] = _org_fk()
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))  # stored lower-cased
    type: Mapped[PersonType] = mapped_column(string_enum(PersonType))
    pgy_level: Mapped[int | None] = mapped_column(Integer)
    specialty: Mapped[str | None] = mapped_column(String(100))


class Absence(IdMixin, TimestampMixin, Base):
    __tablename__ = "absences"
    __table_args__ = (CheckConstraint("end_date >= start_date", name="dates"),)

    organization_id: Mapped[uuid.UUID] = _org_fk()
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)  # inclusive
    kind: Mapped[str] = mapped_column(String(50))


class Block(IdMixin, TimestampMixin, Base):
    __tablename__ = "blocks"
    # Also the index for date-range lookups (organization first, then date).
    __table_args__ = (UniqueConstraint("organization_id", "date", "time_of_day"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    date: Mapped[date] = mapped_column(Date)
    time_of_day: Mapped[TimeOfDay] = mapped_column(string_enum(TimeOfDay, length=2))


class Rotation(IdMixin, TimestampMixin, Base):
    __tablename__ = "rotations"
    __table_args__ = (
        CheckConstraint(
            "min_residents >= 0 AND max_residents >= min_residents", name="resident_range"
        ),
    )

    organization_id: Mapped[uuid.UUID] = _org_fk()
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[RotationKind] = mapped_column(string_enum(RotationKind))
    specialty: Mapped[str | None] = mapped_column(String(100))
    min_residents: Mapped[int] = mapped_column(Integer, default=0)
    max_residents: Mapped[int] = mapped_column(Integer, default=1)
    requires_supervision: Mapped[bool] = mapped_column(Boolean, default=True)
    hours_per_block: Mapped[float] = mapped_column(Float, default=DEFAULT_HOURS_PER_BLOCK)
    # The generator puts no one on call the night before they work this rotation (e.g. a
    # clinic that would otherwise be cancelled post-call).
    no_call_before: Mapped[bool] = mapped_column(default=False, server_default=false())


class Schedule(IdMixin, TimestampMixin, Base):
    __tablename__ = "schedules"
    __table_args__ = (CheckConstraint("end_date >= start_date", name="dates"),)

    organization_id: Mapped[uuid.UUID] = _org_fk()
    name: Mapped[str] = mapped_column(String(200))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)  # inclusive
    status: Mapped[ScheduleStatus] = mapped_column(
        string_enum(ScheduleStatus), default=ScheduleStatus.draft
    )
    # Solver figures of the last generation (status, objective, bound, gap, times, ...).
    statistics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What the solver reported while it ran (phase, incumbent objective, bound, seconds).
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Why the last generation failed: which requirement cannot be met.
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # Call the generator assigns: this many residents on in-house call every night of the
    # period (0: no call), from `call_start_hour` for `call_hours` (local time).
    call_per_night: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    call_start_hour: Mapped[int] = mapped_column(Integer, default=19, server_default="19")
    call_hours: Mapped[float] = mapped_column(Float, default=12.0, server_default="12")
    # Holidays in the period (ISO dates): holiday calls are shared fairly over the year.
    holidays: Mapped[list[str] | None] = mapped_column(JSON)


class Assignment(IdMixin, TimestampMixin, Base):
    __tablename__ = "assignments"
    __table_args__ = (
        # One assignment per person and block within a schedule: the database, not a
        # check-then-insert, decides between two concurrent requests.
        UniqueConstraint("schedule_id", "person_id", "block_id"),
        Index("ix_assignments_organization_id_block_id", "organization_id", "block_id"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # A real cascade: deleting a schedule removes its assignments on both databases.
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    block_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"))
    rotation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rotations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[AssignmentRole] = mapped_column(string_enum(AssignmentRole))


class Swap(IdMixin, TimestampMixin, Base):
    __tablename__ = "swaps"

    organization_id: Mapped[uuid.UUID] = _org_fk()
    # SET NULL: the swap stays on record (invalidated) when its assignment goes away.
    assignment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), index=True
    )
    from_person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    to_person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[SwapStatus] = mapped_column(string_enum(SwapStatus), default=SwapStatus.pending)
    # The review thread it waits in; no foreign key, so the review tables stay independent.
    thread_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime | None]
    kind: Mapped[SwapKind] = mapped_column(
        string_enum(SwapKind), default=SwapKind.give_away, server_default=SwapKind.give_away.value
    )
    # Exchange: the counterpart's assignment that the giving person takes in return.
    counter_assignment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), index=True
    )
    # Whether the counterpart must accept before a coordinator may approve, and when they did.
    needs_acceptance: Mapped[bool] = mapped_column(default=False, server_default=false())
    accepted_at: Mapped[datetime | None]
    accepted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class Call(IdMixin, TimestampMixin, Base):
    """A call period of one person in a schedule, in the program's local time (naive
    datetimes, as the rule engine reads them). Home call counts `worked_hours` only."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint('"end" > start', name="period"),
        CheckConstraint("worked_hours IS NULL OR worked_hours >= 0", name="worked_hours"),
        Index("ix_calls_organization_id_start", "organization_id", "start"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    schedule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[CallKind] = mapped_column(string_enum(CallKind))
    start: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    end: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    worked_hours: Mapped[float | None] = mapped_column(Float)


class Moonlighting(IdMixin, TimestampMixin, Base):
    """Hours one person worked outside the schedule in the week from `week_start`."""

    __tablename__ = "moonlighting"
    __table_args__ = (
        # One entry per person, week and kind: a correction replaces it (DELETE, POST).
        UniqueConstraint("person_id", "week_start", "kind"),
        CheckConstraint("hours > 0 AND hours <= 168", name="hours"),
    )

    organization_id: Mapped[uuid.UUID] = _org_fk()
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    week_start: Mapped[date] = mapped_column(Date)
    hours: Mapped[float] = mapped_column(Float)
    kind: Mapped[MoonlightingKind] = mapped_column(string_enum(MoonlightingKind))
