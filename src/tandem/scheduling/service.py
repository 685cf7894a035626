"""Scheduling domain logic: people, blocks, rotations, schedules and assignments.

Every function takes the acting principal and works inside its organization (another
tenant's object is reported as not found). Rule checks go through the one rule engine
(`rules/`) on a `ScheduleProblem` built by `problem.load_problem`.
"""

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit import service as audit
from tandem.audit.service import AuditAction
from tandem.db import compare_and_set, new_id, unique_or_conflict, utcnow
from tandem.errors import Conflict, Invalid, NotFound
from tandem.identity.principal import Principal
from tandem.jobs.service import JobControl, cancel_unfinished, submit_job
from tandem.pagination import PageParams, paginate
from tandem.quotas import enforce_quota
from tandem.scheduling import domain, rules, states
from tandem.scheduling.domain import AssignmentRole, PersonType, TimeOfDay
from tandem.scheduling.models import (
    Absence,
    Assignment,
    Block,
    Call,
    Person,
    Rotation,
    Schedule,
    ScheduleStatus,
)
from tandem.scheduling.problem import load_problem, to_domain_assignment
from tandem.scheduling.schemas import (
    AbsenceConflict,
    AbsenceIn,
    AssignmentIn,
    PersonIn,
    PersonPatch,
    RotationIn,
    ScheduleIn,
    check_person_fields,
)
from tandem.tenancy import owned
from tandem.webhooks.service import schedule_ended

GENERATE_TASK = "schedule.generate"


# --- loading ------------------------------------------------------------------------------------


async def get_person(session: AsyncSession, principal: Principal, person_id: uuid.UUID) -> Person:
    return await owned(session, principal, Person, person_id, "Person")


async def get_schedule(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID
) -> Schedule:
    return await owned(session, principal, Schedule, schedule_id, "Schedule")


async def fail_given_up_generation(
    session: AsyncSession, job_id: uuid.UUID, payload: dict[str, Any], error: str
) -> None:
    """The generation job gave up without failing its schedule itself (it was cancelled, or
    its last lease expired): the `on_give_up` hook of `schedule.generate`."""
    schedule_id = uuid.UUID(payload["schedule_id"])
    organization_id = (
        await session.execute(
            update(Schedule)
            .where(
                Schedule.id == schedule_id,
                Schedule.status == ScheduleStatus.generating,
                Schedule.job_id == job_id,
            )
            .values(
                status=ScheduleStatus.failed,
                error=f"Generation stopped: {error}",
                progress={"phase": "stopped"},
                updated_at=utcnow(),
            )
            .returning(Schedule.organization_id)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if organization_id is not None:
        await schedule_ended(
            session, organization_id, schedule_id, "failed", f"Generation stopped: {error}"
        )


async def get_assignment(
    session: AsyncSession, principal: Principal, assignment_id: uuid.UUID
) -> Assignment:
    return await owned(session, principal, Assignment, assignment_id, "Assignment")


def _ask(
    change: Callable[[states.ScheduleState], states.ScheduleState], state: states.ScheduleState
) -> states.ScheduleState:
    """What `change` leads to from `state`; a change the state does not allow is a 409."""
    try:
        return change(state)
    except states.IllegalTransition as exc:
        raise Conflict(str(exc)) from exc


# --- people and absences ------------------------------------------------------------------------


async def _flush_unique_email(session: AsyncSession) -> None:
    """Flush in a savepoint: the unique constraint, not a prior SELECT, decides races."""
    async with unique_or_conflict(
        session, "A person with this e-mail already exists in the organization"
    ):
        await session.flush()


async def create_person(
    session: AsyncSession, principal: Principal, body: PersonIn, *, quota: int
) -> Person:
    await enforce_quota(
        session,
        Person,
        principal.organization_id,
        limit=quota,
        what="people",
        remedy="delete one first",
    )
    person = Person(
        organization_id=principal.organization_id,
        name=body.name,
        email=body.email,
        type=body.type,
        pgy_level=body.pgy_level,
        specialty=body.specialty,
    )
    session.add(person)
    await _flush_unique_email(session)
    return person


async def list_people(
    session: AsyncSession, principal: Principal, params: PageParams, *, type_: PersonType | None
) -> tuple[Sequence[Person], int]:
    query = select(Person).where(Person.organization_id == principal.organization_id)
    if type_ is not None:
        query = query.where(Person.type == type_)
    return await paginate(session, query.order_by(Person.name, Person.id), params)


async def update_person(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, body: PersonPatch
) -> Person:
    person = await get_person(session, principal, person_id)
    changes = body.changes()
    type_ = changes.get("type", person.type)
    pgy_level = changes.get("pgy_level", person.pgy_level)
    # Turning a resident into faculty drops the PGY level unless the client sent one.
    if type_ is PersonType.FACULTY and "pgy_level" not in changes:
        pgy_level = None
    try:
        check_person_fields(type_, pgy_level)
    except ValueError as exc:  # PydanticCustomError is a ValueError
        raise Invalid(str(exc), loc=("body", "pgy_level")) from exc
    if type_ is not person.type and await session.scalar(
        select(Assignment.id).where(Assignment.person_id == person.id).limit(1)
    ):
        # Their assignments carry the role of their type (primary or supervising).
        raise Conflict("This person has assignments; remove them before changing the type")
    for field, value in changes.items():
        setattr(person, field, value)
    person.pgy_level = pgy_level
    await _flush_unique_email(session)
    return person


async def delete_person(session: AsyncSession, principal: Principal, person_id: uuid.UUID) -> None:
    """Their absences, assignments, calls, moonlighting and swaps go with them (foreign-key
    cascades); 409 while they have duty or call on a published schedule, which only swaps
    change."""
    person = await get_person(session, principal, person_id)
    on_published = Schedule.status == ScheduleStatus.published
    published = (
        await session.scalars(
            select(Schedule.name)
            .where(
                on_published,
                or_(
                    Schedule.id.in_(
                        select(Assignment.schedule_id).where(Assignment.person_id == person.id)
                    ),
                    Schedule.id.in_(select(Call.schedule_id).where(Call.person_id == person.id)),
                ),
            )
            .distinct()
            .order_by(Schedule.name)
        )
    ).all()
    if published:
        noun = "schedule" if len(published) == 1 else "schedules"
        raise Conflict(
            f"{person.name} has assignments in the published {noun} {', '.join(published)}; "
            "swap them out first"
        )
    await session.execute(delete(Person).where(Person.id == person.id))
    await audit.record(
        session,
        AuditAction.person_deleted,
        organization_id=principal.organization_id,
        actor=principal,
        target=("person", person_id),
    )


async def add_absence(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, body: AbsenceIn
) -> tuple[Absence, list[AbsenceConflict], str | None]:
    """Records the absence, whatever it overlaps, and returns the person's assignments on its
    days (any schedule but a failed one) with how to resolve them: the absence is a fact,
    the schedules are what must change."""
    person = await get_person(session, principal, person_id)
    absence = Absence(
        organization_id=principal.organization_id,
        person_id=person.id,
        start_date=body.start_date,
        end_date=body.end_date,
        kind=body.kind.value,
    )
    session.add(absence)
    await session.flush()
    rows = (
        await session.execute(
            select(Assignment, Block, Rotation, Schedule)
            .join(Block, Block.id == Assignment.block_id)
            .join(Rotation, Rotation.id == Assignment.rotation_id)
            .join(Schedule, Schedule.id == Assignment.schedule_id)
            .where(
                Assignment.person_id == person.id,
                Block.date.between(absence.start_date, absence.end_date),
                Schedule.status != ScheduleStatus.failed,
            )
        )
    ).all()
    conflicts = sorted(
        (
            AbsenceConflict(
                assignment_id=assignment.id,
                schedule_id=schedule.id,
                schedule_status=schedule.status,
                block_id=block.id,
                date=block.date,
                time_of_day=block.time_of_day,
                rotation_id=rotation.id,
                rotation_name=rotation.name,
                role=assignment.role,
            )
            for assignment, block, rotation, schedule in rows
        ),
        key=lambda c: (c.date, c.time_of_day != TimeOfDay.AM, str(c.schedule_id)),
    )
    return absence, conflicts, _resolution(person, conflicts)


def _resolution(person: Person, conflicts: list[AbsenceConflict]) -> str | None:
    """How to resolve an absence's conflicts: a swap per assignment always works (once the
    coordinator approves it); regenerating works for a schedule not yet published (the
    generator never assigns anyone on a day they are away)."""
    if not conflicts:
        return None
    regenerable = sorted(
        {str(c.schedule_id) for c in conflicts if c.schedule_status in states.GENERATABLE}
    )
    days = sorted({c.date for c in conflicts})
    text = (
        f"{person.name} is assigned on {len(conflicts)} block(s) during the absence "
        f"({days[0]} to {days[-1]}): hand each to someone free with POST /api/v1/swaps "
        f"{{assignment_id, to_person_id, reason}}"
    )
    if regenerable:
        text += ", or regenerate " + ", ".join(
            f"POST /api/v1/schedules/{schedule_id}/generate" for schedule_id in regenerable
        )
    return text


async def list_absences(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, params: PageParams
) -> tuple[Sequence[Absence], int]:
    person = await get_person(session, principal, person_id)
    query = select(Absence).where(Absence.person_id == person.id)
    return await paginate(session, query.order_by(Absence.start_date, Absence.id), params)


# --- blocks and rotations -----------------------------------------------------------------------


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


async def generate_blocks(
    session: AsyncSession, principal: Principal, start: date, end: date
) -> int:
    """An AM and a PM block for every day; the ones that exist are kept (idempotent).

    Returns how many were created. One INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and
    SQLite both have it): concurrent calls for overlapping dates each create what is still
    missing, and the unique constraint, not a prior SELECT, decides which call made a block.
    """
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "organization_id": principal.organization_id,
            "date": day,
            "time_of_day": time_of_day,
            "created_at": now,
            "updated_at": now,
        }
        for day in _days(start, end)
        for time_of_day in (TimeOfDay.AM, TimeOfDay.PM)
    ]
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
    created = await session.execute(
        insert(Block)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["organization_id", "date", "time_of_day"])
        .returning(Block.id)
    )
    return len(created.all())


async def list_blocks(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    start: date | None,
    end: date | None,
) -> tuple[Sequence[Block], int]:
    query = select(Block).where(Block.organization_id == principal.organization_id)
    if start is not None:
        query = query.where(Block.date >= start)
    if end is not None:
        query = query.where(Block.date <= end)
    # "AM" sorts before "PM", so this is time order within a day too.
    return await paginate(session, query.order_by(Block.date, Block.time_of_day), params)


def block_key_at(moment: datetime) -> tuple[date, TimeOfDay]:
    """The block a moment falls in, in UTC: AM before noon, PM from noon."""
    if moment.tzinfo is None:
        raise ValueError("Naive datetime given; use an aware datetime (UTC)")
    utc = moment.astimezone(UTC)
    return utc.date(), (TimeOfDay.AM if utc.hour < 12 else TimeOfDay.PM)


async def current_block(session: AsyncSession, principal: Principal) -> Block:
    day, time_of_day = block_key_at(utcnow())
    block = await session.scalar(
        select(Block).where(
            Block.organization_id == principal.organization_id,
            Block.date == day,
            Block.time_of_day == time_of_day,
        )
    )
    if block is None:
        raise NotFound(f"No block for {day.isoformat()} {time_of_day.value}: generate blocks")
    return block


async def create_rotation(
    session: AsyncSession, principal: Principal, body: RotationIn
) -> Rotation:
    rotation = Rotation(organization_id=principal.organization_id, **body.model_dump())
    session.add(rotation)
    await session.flush()
    return rotation


async def list_rotations(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[Sequence[Rotation], int]:
    query = select(Rotation).where(Rotation.organization_id == principal.organization_id)
    return await paginate(session, query.order_by(Rotation.name, Rotation.id), params)


# --- schedules ----------------------------------------------------------------------------------


async def create_schedule(
    session: AsyncSession, principal: Principal, body: ScheduleIn, *, quota: int
) -> Schedule:
    await enforce_quota(
        session,
        Schedule,
        principal.organization_id,
        limit=quota,
        what="schedules",
        remedy="delete one first",
    )
    schedule = Schedule(
        organization_id=principal.organization_id,
        name=body.name,
        start_date=body.start_date,
        end_date=body.end_date,
        status=ScheduleStatus.draft,
        created_by_id=principal.user_id,
        call_per_night=body.call_per_night,
        call_start_hour=body.call_start_hour,
        call_hours=body.call_hours,
        holidays=[day.isoformat() for day in body.holidays] or None,
    )
    session.add(schedule)
    await session.flush()
    return schedule


async def list_schedules(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[Sequence[Schedule], int]:
    query = select(Schedule).where(Schedule.organization_id == principal.organization_id)
    return await paginate(session, query.order_by(Schedule.start_date, Schedule.id), params)


async def delete_schedule(
    session: AsyncSession, jobs: JobControl, principal: Principal, schedule_id: uuid.UUID
) -> None:
    """The database removes its assignments (ON DELETE CASCADE); its generation job, if one
    is queued or running, is cancelled (a running solver stops)."""
    schedule = await get_schedule(session, principal, schedule_id)
    await _stop_generation(session, jobs, schedule)
    await session.execute(delete(Schedule).where(Schedule.id == schedule.id))
    await audit.record(
        session,
        AuditAction.schedule_deleted,
        organization_id=principal.organization_id,
        actor=principal,
        target=("schedule", schedule_id),
        details={"status": schedule.status.value},
    )


async def _stop_generation(session: AsyncSession, jobs: JobControl, schedule: Schedule) -> None:
    """The schedule's last generation job, unless it has finished, is cancelled: nobody
    wants its result any more (the schedule is gone, or generated anew)."""
    if schedule.job_id is not None:
        await cancel_unfinished(session, jobs, schedule.job_id)


async def publish_schedule(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID
) -> Schedule:
    """A generated schedule becomes the published one: final, and a fact for the others."""
    schedule = await get_schedule(session, principal, schedule_id)
    seen = states.state_of(schedule)
    after = _ask(states.publish, seen)
    published = await compare_and_set(
        session,
        update(Schedule)
        .where(Schedule.id == schedule.id, Schedule.status == seen.status)
        .values(status=after.status, updated_at=utcnow()),
    )
    if not published:  # a concurrent request changed it first
        raise Conflict(f"Schedule is {schedule.status.value}; only a generated one is published")
    await session.refresh(schedule)
    return schedule


async def request_generation(
    session: AsyncSession,
    jobs: JobControl,
    principal: Principal,
    schedule_id: uuid.UUID,
    *,
    timeout_seconds: float,
) -> uuid.UUID:
    """Marks the schedule `generating` and submits the job that fills it; returns the job id."""
    schedule = await get_schedule(session, principal, schedule_id)
    blocks = await session.scalar(
        select(Block.id)
        .where(
            Block.organization_id == principal.organization_id,
            Block.date.between(schedule.start_date, schedule.end_date),
        )
        .limit(1)
    )
    if blocks is None:
        raise Invalid(
            "The schedule's dates have no blocks: POST /api/v1/blocks/generate first",
            loc=("path", "schedule_id"),
        )
    seen = states.state_of(schedule)
    after = _ask(states.generate, seen)
    # Guarded on the status read: of two concurrent requests, one starts a generation.
    claimed = await compare_and_set(
        session,
        update(Schedule)
        .where(Schedule.id == schedule.id, Schedule.status == seen.status)
        .values(status=after.status, error=None, progress={"phase": "queued"}, updated_at=utcnow()),
    )
    if not claimed:
        raise Conflict(f"Schedule is {schedule.status.value}; it cannot be generated now")
    await _stop_generation(session, jobs, schedule)
    job, _ = await submit_job(
        session,
        jobs,
        task=GENERATE_TASK,
        payload={"schedule_id": str(schedule.id), "timeout_seconds": timeout_seconds},
        organization_id=principal.organization_id,
        submitted_by_id=principal.user_id,
        # The solver is deterministic: a retry only helps when the worker died.
        max_attempts=2,
    )
    after = states.assign_job(after, job.id)
    await session.execute(
        update(Schedule).where(Schedule.id == schedule.id).values(job_id=after.job_id)
    )
    await session.refresh(schedule)
    return job.id


async def validate_schedule(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID
) -> rules.ValidationReport:
    schedule = await get_schedule(session, principal, schedule_id)
    return rules.validate(await load_problem(session, schedule))


# --- assignments --------------------------------------------------------------------------------


async def list_assignments(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    params: PageParams,
    *,
    person_id: uuid.UUID | None,
) -> tuple[Sequence[Assignment], int]:
    schedule = await get_schedule(session, principal, schedule_id)
    query = (
        select(Assignment)
        .join(Block, Block.id == Assignment.block_id)
        .where(Assignment.schedule_id == schedule.id)
    )
    if person_id is not None:
        query = query.where(Assignment.person_id == person_id)
    ordered = query.order_by(Block.date, Block.time_of_day, Assignment.role, Assignment.id)
    return await paginate(session, ordered, params)


def role_for(person: Person | domain.Person) -> AssignmentRole:
    """Residents do the work (primary); faculty supervise."""
    return (
        AssignmentRole.PRIMARY if person.type is PersonType.RESIDENT else AssignmentRole.SUPERVISING
    )


async def create_assignment(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID, body: AssignmentIn
) -> tuple[Assignment, tuple[domain.Violation, ...]]:
    """Adds a manual assignment and returns it with the violations it causes (warnings)."""
    schedule = await get_schedule(session, principal, schedule_id)
    _ask(states.edit_by_hand, states.state_of(schedule))
    person = await owned(session, principal, Person, body.person_id, "Person")
    block = await owned(session, principal, Block, body.block_id, "Block")
    rotation = await owned(session, principal, Rotation, body.rotation_id, "Rotation")
    if body.role is not role_for(person):
        raise Invalid(
            f"A {person.type.value} can only be assigned as {role_for(person).value}",
            loc=("body", "role"),
        )
    if not schedule.start_date <= block.date <= schedule.end_date:
        raise Invalid(
            f"Block {block.id} ({block.date.isoformat()}) is outside the schedule's dates "
            f"{schedule.start_date.isoformat()}..{schedule.end_date.isoformat()}",
            loc=("body", "block_id"),
        )
    assignment = Assignment(
        organization_id=principal.organization_id,
        schedule_id=schedule.id,
        person_id=person.id,
        block_id=block.id,
        rotation_id=rotation.id,
        role=body.role,
    )
    async with unique_or_conflict(session, "This person already has an assignment in this block"):
        session.add(assignment)
    # warnings_for compares the schedule without the assignment and with it.
    problem = await load_problem(session, schedule)
    without = replace(
        problem, assignments=tuple(a for a in problem.assignments if a.id != assignment.id)
    )
    return assignment, rules.warnings_for(without, to_domain_assignment(assignment))


async def delete_assignment(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID, assignment_id: uuid.UUID
) -> None:
    schedule = await get_schedule(session, principal, schedule_id)
    assignment = await get_assignment(session, principal, assignment_id)
    if assignment.schedule_id != schedule.id:
        raise NotFound(f"Assignment {assignment_id} not found")
    _ask(states.edit_by_hand, states.state_of(schedule))
    await session.execute(delete(Assignment).where(Assignment.id == assignment.id))


def statistics_json(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe solver figures (floats that are not finite become None)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    return out
