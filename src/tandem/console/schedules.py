"""The schedule pages: the list, and one schedule's grid with its violations, generation
(progress, then the solver's figures or why it failed), manual assignments and downloads."""

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fastapi import Request, Response
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.console.auth import CheckedForm, CurrentUser, require
from tandem.console.pages import Pager, pager_from
from tandem.console.web import ConsoleRoute, redirect, render, templates
from tandem.db import SessionDep
from tandem.errors import Invalid
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.routing import Router
from tandem.scheduling import domain, rules, service
from tandem.scheduling.domain import PersonType, Severity, TimeOfDay
from tandem.scheduling.models import Assignment, Call, Schedule, ScheduleStatus
from tandem.scheduling.problem import load_problem
from tandem.scheduling.router import csv_download, ics_download
from tandem.scheduling.schemas import AssignmentIn
from tandem.settings import Settings

router = Router(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


@router.get("/schedules")
async def schedules_page(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    require(user, Scope.schedule_read)
    params = pager_from(request)
    rows, total = await service.list_schedules(session, user.principal, params)
    return render(
        request,
        "schedules.html",
        {"user": user, "schedules": rows, "total": total, "pager": Pager(request, params, total)},
    )


@dataclass
class Cell:
    code: str = ""  # HTML-escaped already
    violations: list[domain.Violation] = field(default_factory=list)

    def html(self) -> str:
        """The cell as (escaped) HTML. Cells are built here rather than in the template: a
        28-day grid of 40 people has 2,240 of them, and a template loop per cell cost most of
        the page."""
        severity = worst(self.violations)
        if severity is None:
            return f'<td class="cell">{self.code}</td>'
        rules_broken = escape(", ".join(v.rule.value for v in self.violations))
        return (
            f'<td class="cell sev-{severity}">{self.code}'
            '<span class="mark" aria-hidden="true">!</span>'
            f'<span class="visually-hidden"> {severity}: {rules_broken}</span></td>'
        )


@dataclass
class Row:
    person: domain.Person
    width: int
    cells: dict[int, Cell] = field(default_factory=dict)  # by column; most are empty
    violations: list[domain.Violation] = field(default_factory=list)

    def cell(self, column: int) -> Cell:
        return self.cells.setdefault(column, Cell())

    def cells_html(self) -> Markup:
        cells = self.cells
        # Safe: codes and rule names are escaped where the cells are built; the rest is ours.
        return Markup(  # noqa: S704
            "".join(cells[c].html() if c in cells else "<td></td>" for c in range(self.width))
        )


def _codes(rotations: list[domain.Rotation]) -> dict[uuid.UUID, str]:
    """A short, unique code per rotation for the cells (the legend spells them out)."""
    codes: dict[uuid.UUID, str] = {}
    taken: set[str] = set()
    for rotation in sorted(rotations, key=lambda r: r.name):
        words = rotation.name.split()
        base = (
            "".join(w[0] for w in words[:3]) if len(words) > 1 else rotation.name[:3]
        ).upper() or "?"
        code, n = base, 2
        while code in taken:
            code, n = f"{base}{n}", n + 1
        taken.add(code)
        codes[rotation.id] = code
    return codes


def _group_name(person: domain.Person) -> str:
    return f"PGY-{person.pgy_level}" if person.type is PersonType.RESIDENT else "Faculty"


def _sort_key(person: domain.Person) -> tuple[int, str]:
    rank = person.pgy_level or 0 if person.type is PersonType.RESIDENT else 9
    return rank, person.name


async def _grid(session: AsyncSession, schedule: Schedule) -> dict[str, Any]:
    """The grid's rows (residents by PGY, then faculty), columns (AM and PM per day) and the
    violations, each marked on what it concerns: a cell, a person's row or a block's column."""
    problem = await load_problem(session, schedule)
    report = rules.validate(problem)
    own = set(
        await session.scalars(select(Assignment.id).where(Assignment.schedule_id == schedule.id))
    )
    days = [
        schedule.start_date + timedelta(days=i)
        for i in range((schedule.end_date - schedule.start_date).days + 1)
    ]
    blocks = {(b.date, b.time_of_day): b for b in problem.blocks.values()}
    columns = [blocks.get((day, half)) for day in days for half in (TimeOfDay.AM, TimeOfDay.PM)]
    column_of = {block.id: i for i, block in enumerate(columns) if block is not None}
    people = sorted(problem.people.values(), key=_sort_key)
    row_of = {person.id: i for i, person in enumerate(people)}
    codes = _codes(list(problem.rotations.values()))
    escaped = {rotation_id: str(escape(code)) for rotation_id, code in codes.items()}
    rows = [Row(person, len(columns)) for person in people]
    for a in problem.assignments:
        if a.id in own and a.block_id in column_of and a.person_id in row_of:
            rows[row_of[a.person_id]].cell(column_of[a.block_id]).code = escaped[a.rotation_id]
    column_violations: dict[int, list[domain.Violation]] = defaultdict(list)
    for v in report.violations:
        at_row = row_of.get(v.person_id) if v.person_id else None
        at_column = column_of.get(v.block_id) if v.block_id else None
        if at_row is not None and at_column is not None:
            rows[at_row].cell(at_column).violations.append(v)
        elif at_row is not None:
            rows[at_row].violations.append(v)
        elif at_column is not None:
            column_violations[at_column].append(v)
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(_group_name(row.person), []).append(row)
    # Who is on call each night (this schedule's calls, by the day they start).
    on_call: dict[date, list[str]] = defaultdict(list)
    for call in await session.scalars(
        select(Call).where(Call.schedule_id == schedule.id).order_by(Call.start)
    ):
        person = problem.people.get(call.person_id)
        home = " (home)" if call.kind is domain.CallKind.HOME else ""
        on_call[call.start.date()].append(f"{person.name if person else '?'}{home}")
    return {
        "days": days,
        "call_nights": [", ".join(on_call.get(day, ())) for day in days] if on_call else [],
        "columns": columns,
        "column_violations": column_violations,
        "groups": groups,
        "report": report,
        "legend": sorted(
            ((codes[r.id], r.name) for r in problem.rotations.values()), key=lambda c: c[0]
        ),
        "people": people,
        "rotations": sorted(problem.rotations.values(), key=lambda r: r.name),
        "blocks": [b for b in columns if b is not None],
        "names": {p.id: p.name for p in people},
        "when": {b.id: (b.date, b.time_of_day.value) for b in columns if b is not None},
    }


@router.get("/schedules/{schedule_id}")
async def schedule_page(
    schedule_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> Response:
    require(user, Scope.schedule_read)
    schedule = await service.get_schedule(session, user.principal, schedule_id)
    generating = schedule.status is ScheduleStatus.generating
    can_write = user.can(Scope.schedule_write)
    return render(
        request,
        "schedule.html",
        {
            "user": user,
            "schedule": schedule,
            "generating": generating,
            "can_generate": can_write
            and schedule.status not in (ScheduleStatus.generating, ScheduleStatus.published),
            "can_assign": can_write and not generating,
            "live_version": f"{schedule.status.value}:{schedule.updated_at.isoformat()}",
            **await _grid(session, schedule),
        },
    )


@router.post("/schedules/{schedule_id}/generate")
async def generate(
    schedule_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    control: JobControlDep,
    _: CheckedForm,
) -> Response:
    require(user, Scope.schedule_write)
    settings: Settings = request.app.state.settings
    await service.request_generation(
        session,
        control,
        user.principal,
        schedule_id,
        timeout_seconds=settings.schedule_solver_timeout_seconds,
    )
    return redirect(f"/ui/schedules/{schedule_id}?notice=generating")


def _uuid_field(form: CheckedForm, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(form.get(name, "")))
    except ValueError:
        raise Invalid(f"Choose a {name.removesuffix('_id')}", loc=("body", name)) from None


@router.post("/schedules/{schedule_id}/assignments")
async def assign(
    schedule_id: uuid.UUID, user: CurrentUser, session: SessionDep, form: CheckedForm
) -> Response:
    require(user, Scope.schedule_write)
    person = await service.get_person(session, user.principal, _uuid_field(form, "person_id"))
    await service.create_assignment(
        session,
        user.principal,
        schedule_id,
        AssignmentIn(
            person_id=person.id,
            block_id=_uuid_field(form, "block_id"),
            rotation_id=_uuid_field(form, "rotation_id"),
            role=service.role_for(person),
        ),
    )
    return redirect(f"/ui/schedules/{schedule_id}?notice=assigned")


@router.get("/schedules/{schedule_id}/export.csv")
async def export_csv(schedule_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    require(user, Scope.schedule_read)
    return await csv_download(session, user.principal, schedule_id)


@router.get("/schedules/{schedule_id}/export.ics")
async def export_ics(
    schedule_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    person_id: uuid.UUID | None = None,
) -> Response:
    require(user, Scope.schedule_read)
    return await ics_download(session, user.principal, schedule_id, person_id)


def worst(violations: list[domain.Violation]) -> str | None:
    """The most severe of `violations` (None when there are none), for a cell's colour."""
    if not violations:
        return None
    return min(violations, key=lambda v: SEVERITY_ORDER[v.severity]).severity.value


templates.env.globals["worst"] = worst
templates.env.filters["short_day"] = lambda day: day.strftime("%a %d %b")
