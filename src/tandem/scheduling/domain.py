"""The scheduling vocabulary shared by the rule engine, the solver and the service.

Plain frozen dataclasses, no database: the service loads rows into these, the rule engine
(`rules/`) and the solver (`solver/`) work on them only. Keeping them free of SQLAlchemy
makes the rules and the solver pure, fast to test and fast to run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

DEFAULT_HOURS_PER_BLOCK = 6.0


class PersonType(StrEnum):
    RESIDENT = "resident"
    FACULTY = "faculty"


class TimeOfDay(StrEnum):
    AM = "AM"
    PM = "PM"


class RotationKind(StrEnum):
    CLINIC = "clinic"
    INPATIENT = "inpatient"
    ICU = "icu"
    PROCEDURES = "procedures"
    CONFERENCE = "conference"


class AssignmentRole(StrEnum):
    PRIMARY = "primary"  # a resident doing the rotation's work
    SUPERVISING = "supervising"  # a faculty member supervising the residents on it


class AbsenceKind(StrEnum):
    """Why someone is away. Every kind has the same effect on scheduling: no duty on any
    day of the absence (the generator never assigns one; a manual assignment or a swap onto
    it breaks the `absence` rule), the days hold no duty hours and count as free days in the
    rolling windows, and a resident away during a 4-week block is left out of that block's
    fairness minimum. The kind is recorded for the program's own accounting (leave balances,
    reports)."""

    VACATION = "vacation"
    SICK = "sick"
    CONFERENCE = "conference"
    PARENTAL = "parental"
    DEPLOYMENT = "deployment"
    OTHER = "other"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class RuleName(StrEnum):
    EIGHTY_HOUR = "80_hour"
    ONE_IN_SEVEN = "1_in_7"
    SUPERVISION = "supervision"
    DOUBLE_BOOKING = "double_booking"
    ABSENCE = "absence"
    COVERAGE = "coverage"
    CONTINUOUS_DUTY = "continuous_duty"
    REST_AFTER_CALL = "rest_after_call"
    REST_BETWEEN_SHIFTS = "rest_between_shifts"
    CALL_FREQUENCY = "call_frequency"
    EIGHTY_HOUR_APPROACHING = "80_hour_approaching"


class CallKind(StrEnum):
    IN_HOUSE = "in_house"  # on site for the whole period: every hour is duty
    HOME = "home"  # reachable from home: only the hours actually worked count


class MoonlightingKind(StrEnum):
    INTERNAL = "internal"  # extra shifts in the program's own institution
    EXTERNAL = "external"  # work elsewhere


@dataclass(frozen=True, slots=True)
class Person:
    id: UUID
    type: PersonType
    pgy_level: int | None = None  # 1..3 for residents, None for faculty
    specialty: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Absence:
    person_id: UUID
    start_date: date
    end_date: date  # inclusive


@dataclass(frozen=True, slots=True)
class Block:
    id: UUID
    date: date
    time_of_day: TimeOfDay


@dataclass(frozen=True, slots=True)
class Rotation:
    id: UUID
    name: str
    kind: RotationKind
    min_residents: int = 0
    max_residents: int = 1
    requires_supervision: bool = True
    hours_per_block: float = DEFAULT_HOURS_PER_BLOCK
    specialty: str | None = None
    no_call_before: bool = False  # the generator: no call the night before this rotation


@dataclass(frozen=True, slots=True)
class Assignment:
    person_id: UUID
    block_id: UUID
    rotation_id: UUID
    role: AssignmentRole
    id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """Overnight or 24-hour call beyond the AM/PM blocks, in the program's local time.

    In-house call is duty from `start` to `end`; home call counts only `worked_hours` (the
    hours actually worked, when recorded) toward the 80 hours, on the day it starts."""

    person_id: UUID
    start: datetime
    end: datetime
    kind: CallKind = CallKind.IN_HOUSE
    worked_hours: float | None = None


@dataclass(frozen=True, slots=True)
class Moonlighting:
    """Hours worked outside the schedule (internal or external) in the 7 days from
    `week_start`: they count toward the 80 hours, spread evenly over those days."""

    person_id: UUID
    week_start: date
    hours: float


@dataclass(frozen=True, slots=True)
class CallCounts:
    """Calls a resident has had: all, on weekend nights (Saturday, Sunday), on holidays."""

    calls: int = 0
    weekends: int = 0
    holidays: int = 0


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What the generator assigns besides the blocks: `per_night` residents on in-house call
    every night of the period, from `start_hour` for `hours` (ending by 07:00 the next
    morning), shared fairly with `carried` (the counts from earlier in the academic year)."""

    per_night: int
    start_hour: int = 19
    hours: float = 12.0
    holidays: frozenset[date] = frozenset()
    carried: Mapping[UUID, CallCounts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: RuleName
    severity: Severity
    message: str
    person_id: UUID | None = None
    block_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class ScheduleProblem:
    """Everything the rules and the solver need about one schedule period.

    `blocks` holds the period's blocks plus, for rolling windows, the blocks of the 27 days
    before `start_date` and after `end_date` that carry assignments (`assignments` may include
    those assignments, from other schedules: they count for the windows but are never
    changed).
    """

    start_date: date
    end_date: date  # inclusive
    people: Mapping[UUID, Person]
    blocks: Mapping[UUID, Block]
    rotations: Mapping[UUID, Rotation]
    assignments: Sequence[Assignment] = ()
    absences: Sequence[Absence] = ()
    calls: Sequence[Call] = ()
    moonlighting: Sequence[Moonlighting] = ()
    call_plan: CallPlan | None = None  # the generator's call requirement, if any
