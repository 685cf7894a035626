"""Rows -> `ScheduleProblem`: what the rule engine and the solver see of a schedule.

The one place that decides which rows count when a schedule is judged or generated: its own
assignments and calls, the settled schedules' duty and calls in the 27 days before it and the
27 days after it, moonlighting in those weeks, people, rotations and the absences touching
those days (docs/decisions.md).
"""

import uuid
from collections import defaultdict
from datetime import date, datetime, time, timedelta

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.scheduling import domain
from tandem.scheduling.models import (
    Absence,
    Assignment,
    Block,
    Call,
    Moonlighting,
    Person,
    Rotation,
    Schedule,
    ScheduleStatus,
)

# Rolling windows are 28 days: a window touching the first day of a schedule starts 27 days
# before it, and one touching the last day ends 27 days after it, so those days' assignments
# count too.
LOOKBACK_DAYS = 27
LOOKAHEAD_DAYS = 27
# Schedules whose assignments are facts for the others: a draft is still somebody's work in
# progress, a failed one has none.
SETTLED = (ScheduleStatus.generated, ScheduleStatus.published)
# Call fairness runs over the academic year (1 July to 30 June), not one schedule.
ACADEMIC_YEAR_STARTS = (7, 1)
WEEKEND = 5  # date.weekday(): Saturday and Sunday


def to_domain_person(row: Person) -> domain.Person:
    return domain.Person(
        id=row.id, type=row.type, pgy_level=row.pgy_level, specialty=row.specialty, name=row.name
    )


def to_domain_call(row: Call) -> domain.Call:
    return domain.Call(
        person_id=row.person_id,
        start=row.start,
        end=row.end,
        kind=row.kind,
        worked_hours=row.worked_hours,
    )


def academic_year_start(day: date) -> date:
    """The first day of the academic year holding `day` (residency years start on 1 July)."""
    year = day.year if (day.month, day.day) >= ACADEMIC_YEAR_STARTS else day.year - 1
    return date(year, *ACADEMIC_YEAR_STARTS)


async def call_plan(session: AsyncSession, schedule: Schedule) -> domain.CallPlan | None:
    """The schedule's call requirement for the generator (None: it assigns no call), with
    the in-house calls each person had in the academic year before it (settled schedules),
    so that fairness holds across the year, not only within this period."""
    if not schedule.call_per_night:
        return None
    year_start = academic_year_start(schedule.start_date)
    settled = (
        await session.scalars(
            select(Schedule).where(
                Schedule.organization_id == schedule.organization_id,
                Schedule.status.in_(SETTLED),
                Schedule.id != schedule.id,
                Schedule.end_date >= year_start,
                Schedule.start_date < schedule.start_date,
            )
        )
    ).all()
    earlier = (
        await session.scalars(
            select(Call).where(
                Call.organization_id == schedule.organization_id,
                Call.kind == domain.CallKind.IN_HOUSE,
                Call.start >= datetime.combine(year_start, time()),
                Call.start < datetime.combine(schedule.start_date, time()),
                Call.schedule_id.in_([row.id for row in settled]),
            )
        )
    ).all()
    past_holidays = {date.fromisoformat(d) for row in settled for d in row.holidays or ()}
    counts: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0, 0])
    for call in earlier:
        night = call.start.date()
        counts[call.person_id][0] += 1
        counts[call.person_id][1] += night.weekday() >= WEEKEND
        counts[call.person_id][2] += night in past_holidays
    return domain.CallPlan(
        per_night=schedule.call_per_night,
        start_hour=schedule.call_start_hour,
        hours=schedule.call_hours,
        holidays=frozenset(date.fromisoformat(d) for d in schedule.holidays or ()),
        carried={
            person_id: domain.CallCounts(calls=n, weekends=weekends, holidays=holidays)
            for person_id, (n, weekends, holidays) in counts.items()
        },
    )


def to_domain_assignment(row: Assignment) -> domain.Assignment:
    return domain.Assignment(
        person_id=row.person_id,
        block_id=row.block_id,
        rotation_id=row.rotation_id,
        role=row.role,
        id=row.id,
    )


async def load_problem(
    session: AsyncSession, schedule: Schedule, *, own_assignments: bool = True
) -> domain.ScheduleProblem:
    """The schedule's period with what the rules need to judge it.

    Assignments: this schedule's own (unless `own_assignments` is False, for a generation
    that replaces them) and those of the organization's generated or published schedules,
    from 27 days before the start to 27 days after the end, so every 28-day window touching
    the period sees every duty. Blocks: the period's, plus the earlier and later ones that
    carry one of those assignments. See docs/decisions.md.
    """
    organization_id = schedule.organization_id
    since = schedule.start_date - timedelta(days=LOOKBACK_DAYS)
    until = schedule.end_date + timedelta(days=LOOKAHEAD_DAYS)
    people = (
        await session.scalars(select(Person).where(Person.organization_id == organization_id))
    ).all()
    rotations = (
        await session.scalars(select(Rotation).where(Rotation.organization_id == organization_id))
    ).all()
    blocks = (
        await session.scalars(
            select(Block).where(
                Block.organization_id == organization_id,
                Block.date.between(since, until),
            )
        )
    ).all()
    others = and_(
        Assignment.schedule_id != schedule.id,
        Assignment.schedule_id.in_(
            select(Schedule.id).where(
                Schedule.organization_id == organization_id, Schedule.status.in_(SETTLED)
            )
        ),
    )
    which = or_(Assignment.schedule_id == schedule.id, others) if own_assignments else others
    block_ids = [block.id for block in blocks]
    assignments = (
        await session.scalars(
            select(Assignment).where(
                Assignment.organization_id == organization_id,
                Assignment.block_id.in_(block_ids),
                which,
            )
        )
    ).all()
    absences = (
        await session.scalars(
            select(Absence).where(
                Absence.organization_id == organization_id,
                # Over the settled-duty window, both sides: a call on the last night or a
                # swap near the end must see an absence starting just after it.
                Absence.end_date >= since,
                Absence.start_date <= until,
            )
        )
    ).all()
    # Calls as assignments: this schedule's own (unless replaced) and the settled ones that
    # start in the same range; a call starting the day before `since` still reaches into it.
    settled_schedules = select(Schedule.id).where(
        Schedule.organization_id == organization_id,
        Schedule.status.in_(SETTLED),
        Schedule.id != schedule.id,
    )
    whose_calls: ColumnElement[bool] = Call.schedule_id.in_(settled_schedules)
    if own_assignments:
        whose_calls = or_(Call.schedule_id == schedule.id, whose_calls)
    calls = (
        await session.scalars(
            select(Call).where(
                Call.organization_id == organization_id,
                Call.start >= datetime.combine(since - timedelta(days=2), time()),
                Call.start < datetime.combine(until + timedelta(days=1), time()),
                whose_calls,
            )
        )
    ).all()
    moonlighting = (
        await session.scalars(
            select(Moonlighting).where(
                Moonlighting.organization_id == organization_id,
                Moonlighting.week_start.between(since - timedelta(days=6), until),
            )
        )
    ).all()
    carrying = {assignment.block_id for assignment in assignments}
    return domain.ScheduleProblem(
        start_date=schedule.start_date,
        end_date=schedule.end_date,
        people={row.id: to_domain_person(row) for row in people},
        blocks={
            block.id: domain.Block(id=block.id, date=block.date, time_of_day=block.time_of_day)
            for block in blocks
            if schedule.start_date <= block.date <= schedule.end_date or block.id in carrying
        },
        rotations={
            row.id: domain.Rotation(
                id=row.id,
                name=row.name,
                kind=row.kind,
                min_residents=row.min_residents,
                max_residents=row.max_residents,
                requires_supervision=row.requires_supervision,
                hours_per_block=row.hours_per_block,
                specialty=row.specialty,
                no_call_before=row.no_call_before,
            )
            for row in rotations
        },
        assignments=tuple(to_domain_assignment(row) for row in assignments),
        absences=tuple(
            domain.Absence(
                person_id=row.person_id, start_date=row.start_date, end_date=row.end_date
            )
            for row in absences
        ),
        calls=tuple(to_domain_call(row) for row in calls),
        moonlighting=tuple(
            domain.Moonlighting(person_id=row.person_id, week_start=row.week_start, hours=row.hours)
            for row in moonlighting
        ),
        call_plan=await call_plan(session, schedule),
    )
