"""Call periods (per schedule) and moonlighting hours (per person and week).

Both are duty the rule engine counts (`rules/`): `problem.load_problem` loads them with the
assignments, so validation, manual warnings, swaps and generation all see them. A call is
changed like a manual assignment: never while the schedule is generating, never once it is
published (people plan around it), and answered with the violations it causes.
"""

import uuid
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import unique_or_conflict
from tandem.errors import Invalid, NotFound
from tandem.identity.principal import Principal
from tandem.pagination import PageParams, paginate
from tandem.scheduling import domain, rules, states
from tandem.scheduling.models import Call, Moonlighting, Person
from tandem.scheduling.problem import load_problem, to_domain_call
from tandem.scheduling.schemas import CallIn, MoonlightingIn
from tandem.scheduling.service import _ask, get_person, get_schedule
from tandem.tenancy import owned


async def add_call(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID, body: CallIn
) -> tuple[Call, tuple[domain.Violation, ...]]:
    """Adds a call period and returns it with the violations it causes (warnings)."""
    schedule = await get_schedule(session, principal, schedule_id)
    _ask(states.edit_by_hand, states.state_of(schedule))
    person = await owned(session, principal, Person, body.person_id, "Person")
    if not schedule.start_date <= body.start.date() <= schedule.end_date:
        raise Invalid(
            f"The call starts on {body.start.date().isoformat()}, outside the schedule's dates "
            f"{schedule.start_date.isoformat()}..{schedule.end_date.isoformat()}",
            loc=("body", "start"),
        )
    call = Call(
        organization_id=principal.organization_id,
        schedule_id=schedule.id,
        person_id=person.id,
        kind=body.kind,
        start=body.start,
        end=body.end,
        worked_hours=body.worked_hours,
    )
    session.add(call)
    await session.flush()
    problem = await load_problem(session, schedule)
    added = to_domain_call(call)
    others = list(problem.calls)
    others.remove(added)  # the schedule as it was: this call once fewer
    return call, rules.warnings_for_call(replace(problem, calls=tuple(others)), added)


async def list_calls(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    params: PageParams,
    *,
    person_id: uuid.UUID | None,
) -> tuple[Sequence[Call], int]:
    schedule = await get_schedule(session, principal, schedule_id)
    query = select(Call).where(Call.schedule_id == schedule.id)
    if person_id is not None:
        query = query.where(Call.person_id == person_id)
    return await paginate(session, query.order_by(Call.start, Call.id), params)


async def delete_call(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID, call_id: uuid.UUID
) -> None:
    schedule = await get_schedule(session, principal, schedule_id)
    call = await owned(session, principal, Call, call_id, "Call")
    if call.schedule_id != schedule.id:
        raise NotFound(f"Call {call_id} not found")
    _ask(states.edit_by_hand, states.state_of(schedule))
    await session.execute(delete(Call).where(Call.id == call.id))


async def add_moonlighting(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, body: MoonlightingIn
) -> Moonlighting:
    person = await get_person(session, principal, person_id)
    entry = Moonlighting(
        organization_id=principal.organization_id,
        person_id=person.id,
        week_start=body.week_start,
        hours=body.hours,
        kind=body.kind,
    )
    conflict = (
        f"{person.name} already has {body.kind.value} moonlighting for the week from "
        f"{body.week_start.isoformat()}; delete it first to correct it"
    )
    async with unique_or_conflict(session, conflict):
        session.add(entry)
    return entry


async def list_moonlighting(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, params: PageParams
) -> tuple[Sequence[Moonlighting], int]:
    person = await get_person(session, principal, person_id)
    query = select(Moonlighting).where(Moonlighting.person_id == person.id)
    return await paginate(
        session, query.order_by(Moonlighting.week_start, Moonlighting.kind), params
    )


async def delete_moonlighting(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, entry_id: uuid.UUID
) -> None:
    person = await get_person(session, principal, person_id)
    entry = await owned(session, principal, Moonlighting, entry_id, "Moonlighting entry")
    if entry.person_id != person.id:
        raise NotFound(f"Moonlighting entry {entry_id} not found")
    await session.execute(delete(Moonlighting).where(Moonlighting.id == entry.id))
