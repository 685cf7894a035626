"""A schedule's duties as CSV (one row per assignment or call) and iCalendar (one event per
duty period), for `GET /api/v1/schedules/{id}/export.csv|.ics` and the console's downloads.

Blocks are half days in UTC (see `service.block_key_at`): an AM duty ends at noon, a PM duty
starts at noon, each lasting its rotation's hours per block. A call row has `time_of_day`
"call", the call's kind as `role` ("in_house" or "home") and its times as entered (the
program's local time, no offset).
"""

import csv
import io
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import utcnow
from tandem.identity.principal import Principal
from tandem.scheduling import service
from tandem.scheduling.domain import CallKind, TimeOfDay
from tandem.scheduling.models import Assignment, Block, Call, Person, Rotation, Schedule

NOON = time(12, 0, tzinfo=UTC)
CSV_COLUMNS = (
    "date",
    "time_of_day",
    "start",
    "end",
    "person",
    "email",
    "type",
    "pgy_level",
    "rotation",
    "role",
    "assignment_id",  # the call's id on a call row
)


_CALL_NAMES = {CallKind.IN_HOUSE: "In-house call", CallKind.HOME: "Home call"}
_PERIOD_ORDER = {"AM": 0, "PM": 1, "call": 2}


@dataclass(frozen=True)
class Duty:
    """One duty period: a block's assignment, or a call (`period` "call")."""

    id: uuid.UUID  # the assignment's or the call's
    day: date
    period: str  # "AM", "PM" or "call"
    person: Person
    what: str  # the rotation's name, or "In-house call" / "Home call"
    role: str  # primary / supervising, or the call's kind
    start: datetime
    end: datetime

    @property
    def summary(self) -> str:
        if self.period == "call":
            return f"{self.what}: {self.person.name}"
        return f"{self.what}: {self.person.name} ({self.role})"


def _block_duty(assignment: Assignment, block: Block, person: Person, rotation: Rotation) -> Duty:
    hours = timedelta(hours=rotation.hours_per_block)
    noon = datetime.combine(block.date, NOON)
    start = noon - hours if block.time_of_day is TimeOfDay.AM else noon
    return Duty(
        assignment.id,
        block.date,
        block.time_of_day.value,
        person,
        rotation.name,
        assignment.role.value,
        start,
        start + hours,
    )


def _call_duty(call: Call, person: Person) -> Duty:
    # Call times are the program's local time as entered: no offset (a floating time in
    # iCalendar, shown as is by calendar programs).
    return Duty(
        call.id,
        call.start.date(),
        "call",
        person,
        _CALL_NAMES[call.kind],
        call.kind.value,
        call.start,
        call.end,
    )


async def duties(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    *,
    person_id: uuid.UUID | None = None,
) -> tuple[Schedule, list[Duty]]:
    """The schedule's assignments and calls in time order (404 for another organization's
    schedule or person)."""
    schedule = await service.get_schedule(session, principal, schedule_id)
    query = (
        select(Assignment, Block, Person, Rotation)
        .join(Block, Block.id == Assignment.block_id)
        .join(Person, Person.id == Assignment.person_id)
        .join(Rotation, Rotation.id == Assignment.rotation_id)
        .where(Assignment.schedule_id == schedule.id)
    )
    call_query = (
        select(Call, Person)
        .join(Person, Person.id == Call.person_id)
        .where(Call.schedule_id == schedule.id)
    )
    if person_id is not None:
        await service.get_person(session, principal, person_id)
        query = query.where(Assignment.person_id == person_id)
        call_query = call_query.where(Call.person_id == person_id)
    rows = [_block_duty(*row) for row in (await session.execute(query)).all()]
    rows += [_call_duty(*row) for row in (await session.execute(call_query)).all()]
    rows.sort(key=lambda d: (d.day, _PERIOD_ORDER[d.period], d.person.name, str(d.id)))
    return schedule, rows


def to_csv(rows: list[Duty]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for duty in rows:
        writer.writerow(
            (
                duty.day.isoformat(),
                duty.period,
                duty.start.isoformat(),
                duty.end.isoformat(),
                duty.person.name,
                duty.person.email,
                duty.person.type.value,
                duty.person.pgy_level or "",
                duty.what,
                duty.role,
                str(duty.id),
            )
        )
    return out.getvalue()


def to_ics(schedule: Schedule, rows: list[Duty]) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", "-//Tandem//Schedule export//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", schedule.name)
    stamp = utcnow()
    for duty in rows:
        event = Event()
        event.add("uid", f"{duty.id}@tandem")
        event.add("dtstamp", stamp)
        event.add("dtstart", duty.start)
        event.add("dtend", duty.end)
        event.add("summary", duty.summary)
        period = "call" if duty.period == "call" else f"{duty.period} block"
        event.add("description", f"{schedule.name}, {duty.day.isoformat()} {period}")
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def filename(schedule: Schedule, extension: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", schedule.name).strip("-").lower() or "schedule"
    return f"{slug}-{schedule.start_date.isoformat()}.{extension}"
