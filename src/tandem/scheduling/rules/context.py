"""`RuleContext`: the problem indexed once for all rules (assignments, calls, moonlighting),
and what a rule is (`Rule`, `Finding`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from uuid import UUID

from tandem.scheduling.domain import (
    Assignment,
    AssignmentRole,
    Block,
    CallKind,
    Person,
    PersonType,
    Rotation,
    RuleName,
    ScheduleProblem,
    Severity,
)
from tandem.scheduling.rules.limits import _FACULTY_UNITS, _MILLI, _SPAN, _TIME_ORDER, BLOCK_STARTS
from tandem.scheduling.rules.units import calculate_supervision_ratio, is_critical_care


@dataclass(frozen=True, slots=True)
class Finding:
    """One breach as a rule reports it; the engine adds the rule's name and severity.

    `on` is the date the violation is sorted by (the block's date, or the first day of the
    worst window / the run); `tiebreak` orders findings of one rule, date and person.
    """

    on: date
    message: str
    person_id: UUID | None = None
    block_id: UUID | None = None
    tiebreak: tuple[int | str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    name: RuleName
    severity: Severity
    check: Callable[[RuleContext], Iterable[Finding]]


@dataclass(slots=True)
class RuleContext:
    """The problem indexed once for all rules (built by `validate`; read by the rules).

    Everything is indexed by small integers, because hashing a `UUID` runs Python code and
    ~80k assignments would spend most of the budget on it: people by `persons` index,
    rotations by `rotations` index (sorted by name), checked blocks by `blocks` index.

    - Rolling rules read windows starting on `origin` (= first-27) .. `last`: every 28-day
      window holding a day of [first, last]. `hours` / `duty` hold each resident's duty
      hours (thousandths) and duty days per day from `origin`, `days` days long.
    - Per-block rules read `blocks`, the period's blocks dated in [first, last]. Per
      (block c, rotation r), at `c * len(rotations) + r`: distinct primary residents, how many
      are PGY-1 and PGY-2, their supervision need in quarters of a faculty member, and
      distinct supervising faculty. `occupied[p][c]` is the code (`rotation*2 + role + 1`) of
      person p's first assignment on block c; `clashes` lists every code when there are more.
    """

    problem: ScheduleProblem
    first: date
    last: date
    persons: list[Person]
    rotations: list[Rotation]
    blocks: list[Block]
    window_count: int = 0
    days: int = 0
    hours: dict[int, list[int]] = field(default_factory=dict)
    duty: dict[int, bytearray] = field(default_factory=dict)
    occupied: list[list[int]] = field(default_factory=list)
    clashes: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    primaries: list[int] = field(default_factory=list)
    pgy1: list[int] = field(default_factory=list)
    pgy2: list[int] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    supervisors: list[int] = field(default_factory=list)
    person_at: dict[int, int] = field(default_factory=dict)
    # Residents with call only: their shifts (start, end, in-house call?) and, per day from
    # `origin`, 1 where an in-house call starts.
    shifts: dict[int, list[tuple[datetime, datetime, bool]]] = field(default_factory=dict)
    call_nights: dict[int, bytearray] = field(default_factory=dict)
    # The shifts merged where they overlap or touch (continuous duty), sorted.
    stretches: dict[int, list[tuple[datetime, datetime, bool]]] = field(default_factory=dict)

    @property
    def origin(self) -> date:
        return self.first - timedelta(days=_SPAN)


def _build_context(problem: ScheduleProblem, around: tuple[date, date] | None) -> RuleContext:
    if problem.start_date > problem.end_date:
        raise ValueError("the schedule period ends before it starts")
    first, last = problem.start_date, problem.end_date
    if around is not None:
        if around[0] > around[1]:
            raise ValueError("around: the first date is after the last")
        # An edit outside the period affects nothing this schedule is judged on.
        first, last = max(first, around[0]), min(last, around[1])
    rotations = sorted(problem.rotations.values(), key=lambda r: (r.name, r.id.int))
    ctx = RuleContext(problem, first, last, list(problem.people.values()), rotations, [])
    if first > last:
        return ctx
    origin = ctx.origin
    ctx.window_count = (last - origin).days + 1
    ctx.days = days = ctx.window_count + _SPAN
    # Where each block falls: (day from origin or -1 if no window reads it, checked index
    # or -1). Keyed by `UUID.int`: an int hashes in C, a UUID in Python.
    place: dict[int, tuple[int, int]] = {}
    for block in sorted(
        problem.blocks.values(), key=lambda b: (b.date, _TIME_ORDER[b.time_of_day], b.id.int)
    ):
        day = (block.date - origin).days
        if first <= block.date <= last:
            place[block.id.int] = (day, len(ctx.blocks))
            ctx.blocks.append(block)
        else:
            place[block.id.int] = (day if 0 <= day < days else -1, -1)
    if any(r.id != key for key, r in problem.rotations.items()) or any(
        p.id != key for key, p in problem.people.items()
    ):
        raise ValueError("people and rotations must be keyed by their own id")
    ctx.person_at = person_at = {person.id.int: i for i, person in enumerate(ctx.persons)}
    rotation_at = {rotation.id.int: i for i, rotation in enumerate(rotations)}
    is_resident = [p.type is PersonType.RESIDENT for p in ctx.persons]
    pgy = [p.pgy_level if p.pgy_level in (1, 2, 3) else 0 for p in ctx.persons]
    # Quarters of a faculty member per resident outside critical care (4 inside); 0 marks a
    # resident without a valid level, refused only if someone needs to supervise them.
    quarters = [_FACULTY_UNITS // calculate_supervision_ratio(lvl) if lvl else 0 for lvl in pgy]
    milli = [round(r.hours_per_block * _MILLI) for r in rotations]
    critical = [is_critical_care(r) for r in rotations]
    supervised = [r.requires_supervision for r in rotations]
    width = len(rotations)
    slots = len(ctx.blocks) * width
    ctx.primaries, ctx.pgy1, ctx.pgy2 = [0] * slots, [0] * slots, [0] * slots
    ctx.units, ctx.supervisors = [0] * slots, [0] * slots
    checked_count = len(ctx.blocks)
    # Every row up front: a subscript per assignment instead of a lookup-or-create.
    ctx.hours = hours = {p: [0] * days for p, res in enumerate(is_resident) if res}
    ctx.duty = duty = {p: bytearray(days) for p in hours}
    ctx.occupied = occupied = [[0] * checked_count for _ in ctx.persons]
    clashes = ctx.clashes
    primaries, pgy1, pgy2, units = ctx.primaries, ctx.pgy1, ctx.pgy2, ctx.units
    supervising_role = AssignmentRole.SUPERVISING
    source: Sequence[Assignment] = problem.assignments
    if around is not None:
        # Most of a year lies outside a swap's windows: drop those assignments first.
        far = {key for key, (day, _) in place.items() if day < 0}
        source = [a for a in source if a.block_id.int not in far]
    try:
        # One comprehension resolves every reference with C-level dict subscripts (the loop
        # below is the cost centre of a full-year check; measured faster than one list per
        # field, GC included).
        resolved = [
            (
                place[a.block_id.int],
                person_at[a.person_id.int],
                rotation_at[a.rotation_id.int],
                a.role == supervising_role,
            )
            for a in source
        ]
    except KeyError:
        # A dangling reference is a bug in whoever built the problem: fail loudly rather
        # than validate a schedule that silently lost an assignment.
        bad = next(
            a
            for a in source
            if a.block_id.int not in place
            or a.person_id.int not in person_at
            or a.rotation_id.int not in rotation_at
        )
        message = f"assignment {bad} refers to an unknown block, person or rotation"
        raise ValueError(message) from None
    for (day, c), p, r, supervising in resolved:
        if day < 0:
            continue  # outside every window and block this check reads
        resident = is_resident[p]
        if resident:
            hours[p][day] += milli[r]
            duty[p][day] = 1
        if c < 0:
            continue
        code = r * 2 + supervising + 1
        mine = occupied[p]
        if not mine[c]:
            mine[c] = code
        else:
            codes = clashes.get((p, c))
            if codes is None:
                codes = clashes[(p, c)] = [mine[c]]
            repeat = code in codes
            codes.append(code)
            if repeat:
                continue  # one person on one rotation in one role counts once
        k = c * width + r
        if supervising:
            if not resident:  # a resident "supervising" is a role mismatch: ignored
                ctx.supervisors[k] += 1
        elif resident:  # a faculty member as primary is a role mismatch: ignored
            primaries[k] += 1
            level = pgy[p]
            if level == 1:
                pgy1[k] += 1
            elif level == 2:
                pgy2[k] += 1
            if supervised[r] and not level:  # as required_faculty refuses it
                raise ValueError(f"resident {ctx.persons[p].id} has no valid pgy_level")
            units[k] += _FACULTY_UNITS if critical[r] else quarters[p]
    if problem.calls or problem.moonlighting:
        _add_calls(ctx)
    return ctx


def _add_calls(ctx: RuleContext) -> None:
    """Call and moonlighting hours into the residents' rolling arrays; shifts for the
    residents with call (their calls and their blocks, at `BLOCK_STARTS`)."""
    problem, origin, days, hours, duty = ctx.problem, ctx.origin, ctx.days, ctx.hours, ctx.duty

    def resident(person_id: UUID) -> int | None:
        p = ctx.person_at.get(person_id.int)
        if p is None:
            raise ValueError(f"a call or moonlighting entry names an unknown person {person_id}")
        return p if p in hours else None  # faculty hours are not limited

    for call in problem.calls:
        if call.end <= call.start:
            raise ValueError(f"call {call} ends before it starts")
        p = resident(call.person_id)
        if p is None:
            continue
        first_day = (call.start.date() - origin).days
        if call.kind is CallKind.HOME:
            if call.worked_hours and 0 <= first_day < days:
                hours[p][first_day] += round(call.worked_hours * _MILLI)
                duty[p][first_day] = 1
            continue
        moment = call.start
        while moment < call.end:  # split at midnights: each day gets its own hours
            upto = min(datetime.combine(moment.date() + timedelta(days=1), time()), call.end)
            day = (moment.date() - origin).days
            if 0 <= day < days:
                hours[p][day] += round((upto - moment).total_seconds() * _MILLI / 3600)
                duty[p][day] = 1
            moment = upto
        if 0 <= first_day < days:
            ctx.call_nights.setdefault(p, bytearray(days))[first_day] = 1
        ctx.shifts.setdefault(p, []).append((call.start, call.end, True))
    for entry in problem.moonlighting:
        p = resident(entry.person_id)
        if p is None:
            continue
        base, extra = divmod(round(entry.hours * _MILLI), 7)
        for i in range(7):
            day = (entry.week_start - origin).days + i
            if 0 <= day < days:
                hours[p][day] += base + (i < extra)
    if not ctx.shifts:
        return
    # Keyed by `UUID.int` (hashed in C); only blocks in the arrays' days can be in a stretch
    # that touches a checked day.
    reach = origin + timedelta(days=days - 1)
    starts = {
        b.id.int: datetime.combine(b.date, BLOCK_STARTS[b.time_of_day])
        for b in problem.blocks.values()
        if origin <= b.date <= reach
    }
    lengths = {r.id.int: timedelta(hours=r.hours_per_block) for r in problem.rotations.values()}
    with_call = {ctx.persons[p].id.int: shifts for p, shifts in ctx.shifts.items()}
    for a in problem.assignments:
        shifts = with_call.get(a.person_id.int)
        if shifts is None:
            continue
        start = starts.get(a.block_id.int)
        length = lengths.get(a.rotation_id.int)
        if start is not None and length is not None:
            shifts.append((start, start + length, False))
    ctx.stretches = {p: _stretches(shifts) for p, shifts in ctx.shifts.items()}


def _stretches(
    shifts: list[tuple[datetime, datetime, bool]],
) -> list[tuple[datetime, datetime, bool]]:
    """Shifts merged into one stretch of duty where they overlap or touch, or where the later
    one starts on the calendar day the previous one started (a day's AM block, PM block and
    evening call are one shift with breaks, not shifts with too little rest between them);
    and whether it holds in-house call. See docs/decisions.md ("One shift per duty day")."""
    out: list[tuple[datetime, datetime, bool]] = []
    previous_day: date | None = None
    for start, end, call in sorted(shifts):
        if out and (start <= out[-1][1] or start.date() == previous_day):
            first, last, had = out[-1]
            out[-1] = (first, max(last, end), had or call)
        else:
            out.append((start, end, call))
        previous_day = start.date()
    return out
