"""HTTP shapes of the scheduling API (API.md, "Scheduling")."""

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tandem.identity.schemas import Email, Name
from tandem.patch import Patch
from tandem.scheduling.domain import (
    AbsenceKind,
    AssignmentRole,
    CallKind,
    MoonlightingKind,
    PersonType,
    RotationKind,
    Severity,
    TimeOfDay,
    Violation,
)
from tandem.scheduling.models import ScheduleStatus, SwapKind, SwapStatus

# Long enough for a year of blocks or a long schedule, short enough that one request cannot
# ask for an unbounded amount of work.
MAX_RANGE_DAYS = 366
EARLIEST = date(1900, 1, 1)
LATEST = date(2999, 12, 31)
PgyLevel = Annotated[int, Field(ge=1, le=3, description="Postgraduate year, 1-3 (residents)")]
Specialty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class _DateRange(BaseModel):
    start_date: date
    end_date: date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start_date < EARLIEST or self.end_date > LATEST:
            # Rolling windows reach 27 days back: date.min would overflow, not answer.
            raise PydanticCustomError(
                "date_out_of_range",
                f"Dates must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
            )
        if self.end_date < self.start_date:
            raise PydanticCustomError("date_range", "end_date must be on or after start_date")
        if (self.end_date - self.start_date).days >= MAX_RANGE_DAYS:
            raise PydanticCustomError(
                "date_range_too_long", f"The range may span at most {MAX_RANGE_DAYS} days"
            )
        return self


def check_person_fields(type_: PersonType, pgy_level: int | None) -> None:
    """A resident has a PGY level (1-3); faculty has none."""
    if type_ is PersonType.RESIDENT and pgy_level is None:
        raise PydanticCustomError("pgy_level_missing", "A resident needs a pgy_level (1-3)")
    if type_ is PersonType.FACULTY and pgy_level is not None:
        raise PydanticCustomError(
            "pgy_level_not_allowed", "pgy_level is for residents only; faculty has none"
        )


# --- people -----------------------------------------------------------------------------------


class PersonIn(BaseModel):
    name: Name
    email: Email
    type: PersonType
    pgy_level: PgyLevel | None = None
    specialty: Specialty | None = None

    @model_validator(mode="after")
    def _level_fits_type(self) -> Self:
        check_person_fields(self.type, self.pgy_level)
        return self


class PersonPatch(Patch):
    """The result is checked as a whole by the service."""

    not_null = frozenset({"name", "email", "type"})

    name: Name | None = None
    email: Email | None = None
    type: PersonType | None = None
    pgy_level: PgyLevel | None = None
    specialty: Specialty | None = None


class PersonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    email: str
    type: PersonType
    pgy_level: int | None
    specialty: str | None
    created_at: datetime
    updated_at: datetime


# Before the kinds were named, any text was accepted and "leave" was the default: it still
# is accepted, and means `other`.
_LEGACY_KINDS = {"leave": AbsenceKind.OTHER}


class AbsenceIn(_DateRange):
    kind: AbsenceKind = Field(
        default=AbsenceKind.OTHER,
        description="vacation, sick, conference, parental, deployment or other (all keep the "
        'person off duty; "leave" is accepted as other)',
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _legacy(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().casefold()
            return _LEGACY_KINDS.get(value, value)
        return value


class AbsenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    person_id: uuid.UUID
    start_date: date
    end_date: date
    kind: str


class AbsenceConflict(BaseModel):
    """An assignment of the absent person on a day of the absence."""

    assignment_id: uuid.UUID
    schedule_id: uuid.UUID
    schedule_status: ScheduleStatus
    block_id: uuid.UUID
    date: date
    time_of_day: TimeOfDay
    rotation_id: uuid.UUID
    rotation_name: str
    role: AssignmentRole


class AbsenceCreated(AbsenceOut):
    conflicts: list[AbsenceConflict] = Field(
        description="The person's assignments on the days of the absence (the absence is "
        "recorded all the same)"
    )
    resolution: str | None = Field(
        description="How to resolve the conflicts: a swap per assignment (POST /swaps) or "
        "regenerating the schedule; null without conflicts"
    )


# --- blocks and rotations -----------------------------------------------------------------------


class BlocksGenerateIn(_DateRange):
    pass


class BlocksGenerated(BaseModel):
    created: int = Field(description="Blocks created; those that already existed are kept")


class BlockOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    date: date
    time_of_day: TimeOfDay


class RotationIn(BaseModel):
    name: Name
    kind: RotationKind
    specialty: Specialty | None = None
    min_residents: Annotated[int, Field(ge=0, le=100)] = 0
    max_residents: Annotated[int, Field(ge=0, le=100)] = 1
    requires_supervision: bool = True
    hours_per_block: Annotated[float, Field(gt=0, le=24)] = 6.0
    no_call_before: bool = Field(
        default=False,
        description="The generator puts no one on call the night before they work this "
        "rotation (e.g. a clinic)",
    )

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.max_residents < self.min_residents:
            raise PydanticCustomError(
                "resident_range", "max_residents must be at least min_residents"
            )
        return self


class RotationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    kind: RotationKind
    specialty: str | None
    min_residents: int
    max_residents: int
    requires_supervision: bool
    hours_per_block: float
    no_call_before: bool


# --- schedules ----------------------------------------------------------------------------------


# Generated call ends by 07:00 the next morning, when the first blocks start: the post-call
# day is then free of blocks and the rest rules hold (docs/decisions.md).
LATEST_CALL_END_HOUR = 24 + 7
MAX_HOLIDAYS = 60


class ScheduleIn(_DateRange):
    name: Name
    call_per_night: Annotated[int, Field(ge=0, le=50)] = Field(
        default=0,
        description="Residents the generator puts on in-house call every night (0: no call)",
    )
    call_start_hour: Annotated[int, Field(ge=0, le=23)] = Field(
        default=19, description="When generated call starts (local time, 0-23)"
    )
    call_hours: Annotated[float, Field(gt=0, le=24)] = Field(
        default=12.0, description="How long generated call lasts; it must end by 07:00 next day"
    )
    holidays: Annotated[list[date], Field(max_length=MAX_HOLIDAYS)] = Field(
        default_factory=list,
        description="Holidays within the period: calls on them are shared fairly over the "
        "academic year",
    )

    @model_validator(mode="after")
    def _call_ends_by_morning(self) -> Self:
        outside = [d for d in self.holidays if not self.start_date <= d <= self.end_date]
        if outside:
            raise PydanticCustomError(
                "holiday_outside",
                f"Holidays must lie within the schedule's dates: {outside[0].isoformat()} does not",
            )
        self.holidays = sorted(set(self.holidays))
        if self.call_start_hour + self.call_hours > LATEST_CALL_END_HOUR:
            raise PydanticCustomError(
                "call_too_late",
                "Generated call must end by 07:00 the next morning: call_start_hour + "
                f"call_hours may be at most {LATEST_CALL_END_HOUR}",
            )
        return self


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    start_date: date
    end_date: date
    status: ScheduleStatus
    statistics: dict[str, Any] | None = Field(
        description="The last generation's solver figures: status, objective, bound, gap, ..."
    )
    progress: dict[str, Any] | None = Field(description="What the solver reports while it runs")
    error: str | None = Field(description="Why the last generation failed")
    job_id: uuid.UUID | None
    call_per_night: int
    call_start_hour: int
    call_hours: float
    holidays: list[date]

    @field_validator("holidays", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    created_at: datetime
    updated_at: datetime


class GenerateIn(BaseModel):
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] | None = None


class GenerateAccepted(BaseModel):
    job_id: uuid.UUID


class ViolationOut(BaseModel):
    rule: str
    severity: Severity
    person_id: uuid.UUID | None
    block_id: uuid.UUID | None
    message: str

    @classmethod
    def of(cls, violation: Violation) -> "ViolationOut":
        return cls(
            rule=violation.rule.value,
            severity=violation.severity,
            person_id=violation.person_id,
            block_id=violation.block_id,
            message=violation.message,
        )


class AssignmentIn(BaseModel):
    person_id: uuid.UUID
    block_id: uuid.UUID
    rotation_id: uuid.UUID
    role: AssignmentRole


class AssignmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    schedule_id: uuid.UUID
    person_id: uuid.UUID
    block_id: uuid.UUID
    rotation_id: uuid.UUID
    role: AssignmentRole


class AssignmentCreated(AssignmentOut):
    warnings: list[ViolationOut] = Field(description="The rule violations this assignment causes")


class ValidationOut(BaseModel):
    valid: bool
    total_violations: int
    violations: list[ViolationOut]
    coverage_rate: float


# --- call and moonlighting ---------------------------------------------------------------------

# Longer than any call a program schedules; bounds what one entry can claim.
MAX_CALL_HOURS = 36


class CallIn(BaseModel):
    person_id: uuid.UUID
    kind: CallKind = Field(
        default=CallKind.IN_HOUSE,
        description="in_house (every hour is duty) or home (only worked_hours count)",
    )
    start: datetime = Field(description="Local time, without an offset (e.g. 2027-03-04T19:00)")
    end: datetime = Field(description="Local time, without an offset; after start")
    worked_hours: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Home call only: the hours actually worked, once known"
    )

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise PydanticCustomError(
                "call_offset",
                "Give call times in the program's local time without an offset "
                "(e.g. 2027-03-04T19:00), as the blocks are",
            )
        if self.end <= self.start:
            raise PydanticCustomError("call_period", "end must be after start")
        length = (self.end - self.start).total_seconds() / 3600
        if length > MAX_CALL_HOURS:
            raise PydanticCustomError(
                "call_too_long", f"A call period may last at most {MAX_CALL_HOURS} hours"
            )
        if self.start.date() < EARLIEST or self.end.date() > LATEST:
            raise PydanticCustomError(
                "date_out_of_range",
                f"Dates must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
            )
        if self.worked_hours is not None:
            if self.kind is not CallKind.HOME:
                raise PydanticCustomError(
                    "worked_hours_not_allowed",
                    "worked_hours is for home call; in-house call counts every hour",
                )
            if self.worked_hours > length:
                raise PydanticCustomError(
                    "worked_hours_too_many", "worked_hours cannot exceed the call's length"
                )
        return self


class CallOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    schedule_id: uuid.UUID
    person_id: uuid.UUID
    kind: CallKind
    start: datetime
    end: datetime
    worked_hours: float | None


class CallCreated(CallOut):
    warnings: list[ViolationOut] = Field(description="The rule violations this call causes")


class MoonlightingIn(BaseModel):
    week_start: date = Field(description="The first of the 7 days the hours were worked in")
    hours: Annotated[float, Field(gt=0, le=168)]
    kind: MoonlightingKind

    @field_validator("week_start")
    @classmethod
    def _in_range(cls, value: date) -> date:
        if not EARLIEST <= value <= LATEST:
            raise PydanticCustomError(
                "date_out_of_range",
                f"Dates must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
            )
        return value


class MoonlightingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    person_id: uuid.UUID
    week_start: date
    hours: float
    kind: MoonlightingKind


# --- swaps --------------------------------------------------------------------------------------


class SwapIn(BaseModel):
    assignment_id: uuid.UUID
    to_person_id: uuid.UUID
    reason: Text
    kind: SwapKind = Field(
        default=SwapKind.give_away,
        description="give_away: the counterpart takes the assignment; exchange: they trade, "
        "the giving person taking `counter_assignment_id` in return",
    )
    counter_assignment_id: uuid.UUID | None = Field(
        default=None, description="Exchange only: the counterpart's assignment given in return"
    )
    needs_acceptance: bool = Field(
        default=False,
        description="The counterpart must accept (POST /swaps/{id}/accept) before a coordinator "
        "may approve. Always true when the holder asks for the swap themselves; a coordinator "
        "arranging a swap both people agreed to may skip it (the default)",
    )

    @model_validator(mode="after")
    def _counterpart_assignment(self) -> Self:
        if self.kind is SwapKind.exchange and self.counter_assignment_id is None:
            raise PydanticCustomError(
                "counter_assignment_missing", "An exchange needs counter_assignment_id"
            )
        if self.kind is SwapKind.give_away and self.counter_assignment_id is not None:
            raise PydanticCustomError(
                "counter_assignment_not_allowed",
                "counter_assignment_id is for exchanges only; a give-away has none",
            )
        return self


class SwapOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: SwapStatus
    thread_id: uuid.UUID | None
    assignment_id: uuid.UUID | None
    from_person_id: uuid.UUID
    to_person_id: uuid.UUID
    reason: str
    kind: SwapKind
    counter_assignment_id: uuid.UUID | None
    needs_acceptance: bool
    accepted_at: datetime | None
    created_at: datetime
