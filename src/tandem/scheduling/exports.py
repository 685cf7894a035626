"""A schedule's duties as CSV (one row per assignment) and iCalendar (one event per duty
period), for `GET /api/v1/schedules/{id}/export.csv|.ics` and the console's downloads.

Blocks are half days in UTC (see `service.block_key_at`): an AM duty ends at noon, a PM duty
starts at noon, each lasting its rotation's hours per block.
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
from tandem.scheduling.domain import TimeOfDay
from tandem.scheduling.models import Assignment, Block, Person, Rotation, Schedule

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
    "assignment_id",
)


@dataclass(frozen=True)
class Duty:
    assignment_id: uuid.UUID
    day: date
    time_of_day: TimeOfDay
    person: Person
    rotation: Rotation
    role: str

    @property
    def start(self) -> datetime:
        noon = datetime.combine(self.day, NOON)
        hours = timedelta(hours=self.rotation.hours_per_block)
        return noon - hours if self.time_of_day is TimeOfDay.AM else noon

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.rotation.hours_per_block)


async def duties(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    *,
    person_id: uuid.UUID | None = None,
) -> tuple[Schedule, list[Duty]]:
    """The schedule's assignments in time order (404 for another organization's schedule or
    person)."""
    schedule = await service.get_schedule(session, principal, schedule_id)
    query = (
        select(Assignment, Block, Person, Rotation)
        .join(Block, Block.id == Assignment.block_id)
        .join(Person, Person.id == Assignment.person_id)
        .join(Rotation, Rotation.id == Assignment.rotation_id)
        .where(Assignment.schedule_id == schedule.id)
        .order_by(Block.date, Block.time_of_day, Person.name, Assignment.id)
    )
    if person_id is not None:
        await service.get_person(session, principal, person_id)
        query = query.where(Assignment.person_id == person_id)
    rows = (await session.execute(query)).all()
    return schedule, [
        Duty(a.id, block.date, block.time_of_day, person, rotation, a.role.value)
        for a, block, person, rotation in rows
    ]


def to_csv(rows: list[Duty]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for duty in rows:
        writer.writerow(
            (
                duty.day.isoformat(),
                duty.time_of_day.value,
                duty.start.isoformat(),
                duty.end.isoformat(),
                duty.person.name,
                duty.person.email,
                duty.person.type.value,
                duty.person.pgy_level or "",
                duty.rotation.name,
                duty.role,
                str(duty.assignment_id),
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
        event.add("uid", f"{duty.assignment_id}@tandem")
        event.add("dtstamp", stamp)
        event.add("dtstart", duty.start)
        event.add("dtend", duty.end)
        event.add("summary", f"{duty.rotation.name}: {duty.person.name} ({duty.role})")
        event.add(
            "description",
            f"{schedule.name}, {duty.day.isoformat()} {duty.time_of_day.value} block",
        )
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def filename(schedule: Schedule, extension: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", schedule.name).strip("-").lower() or "schedule"
    return f"{slug}-{schedule.start_date.isoformat()}.{extension}"
