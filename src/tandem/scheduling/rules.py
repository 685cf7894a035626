"""The ACGME rule engine: one pure-Python check used by everything.

The validation endpoint, the warnings on a manual assignment, the solver's result check and
the swap check all call `validate` (or `warnings_for`), so a schedule means the same thing
everywhere. The engine works on the plain dataclasses of `domain.py` only: no database, no
clock, no I/O.

Rules are small units (`Rule`: a name, a severity and a check function) listed once in
`RULES`; the engine runs them all over a `RuleContext` that indexes the problem once.

Speed: a full year for 100 residents (~80k assignments) must validate in well under 0.5 s.
The rolling rules therefore turn each resident's assignments into one array of duty hours and
one of duty days, then read every 28-day window off prefix sums (O(days) per person, no
per-window rescans). Hours are kept as integer thousandths so window sums are exact and the
320-hour boundary never depends on float rounding.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from itertools import accumulate, pairwise
from operator import sub
from typing import Final
from uuid import UUID

from tandem.scheduling.domain import (
    Assignment,
    AssignmentRole,
    Block,
    Call,
    CallKind,
    Person,
    PersonType,
    Rotation,
    RotationKind,
    RuleName,
    ScheduleProblem,
    Severity,
    TimeOfDay,
    Violation,
)

__all__ = [
    "ADVISORY",
    "BLOCK_STARTS",
    "MAX_CALLS_PER_WINDOW",
    "MAX_CONSECUTIVE_DUTY_DAYS",
    "MAX_WEEKLY_HOURS",
    "MAX_WINDOW_HOURS",
    "MIN_FREE_DAYS_PER_WINDOW",
    "RULES",
    "WINDOW_DAYS",
    "Finding",
    "HoursCheck",
    "Rule",
    "RuleContext",
    "ValidationReport",
    "calculate_supervision_ratio",
    "is_critical_care",
    "new_violations",
    "required_faculty",
    "validate",
    "validate_weekly_hours",
    "warnings_for",
    "warnings_for_call",
]

WINDOW_DAYS: Final = 28  # ACGME averages duty hours and days off over four weeks
MAX_WEEKLY_HOURS: Final = 80
MAX_WINDOW_HOURS: Final = MAX_WEEKLY_HOURS * WINDOW_DAYS // 7  # 320
MIN_FREE_DAYS_PER_WINDOW: Final = WINDOW_DAYS // 7  # one day in seven, averaged: 4 in 28
MAX_CONSECUTIVE_DUTY_DAYS: Final = 6
# Call. Blocks carry no clock times; for the shift rules an AM block starts at 07:00 and a
# PM block at 13:00, each lasting its rotation's hours.
BLOCK_STARTS: Final = {TimeOfDay.AM: time(7), TimeOfDay.PM: time(13)}
MAX_CONTINUOUS: Final = timedelta(hours=24 + 4)  # 24 h of scheduled duty + 4 for transitions
LONG_CALL: Final = timedelta(hours=24)  # in-house call this long earns ...
REST_AFTER_LONG_CALL: Final = timedelta(hours=14)  # ... 14 hours free after it
REST_BETWEEN_SHIFTS: Final = timedelta(hours=8)
MAX_CALLS_PER_WINDOW: Final = WINDOW_DAYS // 3  # every third night, averaged: 9 in 28
APPROACHING_WEEKLY_HOURS: Final = 76

_SPAN: Final = WINDOW_DAYS - 1  # a window [d, d+27]; an edit on day x touches d in [x-27, x]
_MILLI: Final = 1000  # hours as integer thousandths: exact sums, exact 320 h boundary
_MAX_WINDOW_MILLIHOURS: Final = MAX_WINDOW_HOURS * _MILLI
_MAX_WINDOW_DUTY_DAYS: Final = WINDOW_DAYS - MIN_FREE_DAYS_PER_WINDOW
_APPROACHING_WINDOW_MILLIHOURS: Final = APPROACHING_WEEKLY_HOURS * WINDOW_DAYS // 7 * _MILLI
# Supervision is counted in quarters of a faculty member: every ratio (1, 2, 4) divides 4, so
# the sum stays an integer and ceil() is exact. The solver's linear form
# `4*faculty >= 2*pgy1 + pgy23` (`faculty >= residents` in critical care) is the same sum.
_FACULTY_UNITS: Final = 4

# Specialty names that mean a critical-care setting (compared after `_normalise`).
_CRITICAL_CARE_SPECIALTIES: Final = frozenset(
    {
        "critical care",
        "critical care medicine",
        "icu",
        "intensive care",
        "intensive care unit",
        "micu",
        "sicu",
    }
)
_TIME_ORDER: Final = {TimeOfDay.AM: 0, TimeOfDay.PM: 1}
_RULE_ORDER: Final = {name: index for index, name in enumerate(RuleName)}


# --------------------------------------------------------------------------- unit checks


@dataclass(frozen=True, slots=True)
class HoursCheck:
    is_valid: bool
    message: str


def validate_weekly_hours(hours: float) -> HoursCheck:
    """Check one week's duty hours against the ACGME limit (0..80 inclusive)."""
    if math.isnan(hours):
        return HoursCheck(False, "weekly duty hours must be a number")
    if hours < 0:
        return HoursCheck(False, f"{_num(hours)} weekly duty hours is negative")
    if hours > MAX_WEEKLY_HOURS:
        return HoursCheck(
            False,
            f"{_num(hours)} duty hours a week exceeds the limit of {MAX_WEEKLY_HOURS}",
        )
    return HoursCheck(True, f"{_num(hours)} duty hours a week is within {MAX_WEEKLY_HOURS}")


def _normalise(specialty: str) -> str:
    # "Critical-Care", "critical_care " and "CRITICAL  CARE" all mean the same setting.
    return " ".join(specialty.replace("-", " ").replace("_", " ").casefold().split())


def _critical(specialty: str | None, kind: RotationKind | None) -> bool:
    if kind is RotationKind.ICU:
        return True
    return specialty is not None and _normalise(specialty) in _CRITICAL_CARE_SPECIALTIES


def is_critical_care(rotation: Rotation) -> bool:
    """Whether a rotation is a critical-care setting (1:1 supervision whatever the level).

    The solver must use this too (not only `kind == icu`), so a rotation whose specialty is
    "Critical Care" is constrained and checked the same way.
    """
    return _critical(rotation.specialty, rotation.kind)


def calculate_supervision_ratio(
    pgy_level: int, specialty: str | None = None, kind: RotationKind | None = None
) -> int:
    """Residents one faculty member may supervise: 2 for PGY-1, 4 for PGY-2/3, 1 in ICU."""
    # bool is an int subclass; True would silently read as PGY-1.
    if isinstance(pgy_level, bool) or not isinstance(pgy_level, int) or not 1 <= pgy_level <= 3:
        raise ValueError(f"pgy_level must be 1, 2 or 3, not {pgy_level!r}")
    if _critical(specialty, kind):
        return 1
    return 2 if pgy_level == 1 else 4


def required_faculty(rotation: Rotation, residents: Iterable[Person]) -> int:
    """Supervising faculty one block of `rotation` needs: ceil(sum of 1/ratio).

    Faculty in `residents` are skipped (they never need supervising); a resident without a
    valid PGY level raises ValueError.
    """
    if not rotation.requires_supervision:
        return 0
    units = 0
    for person in residents:
        if person.type is not PersonType.RESIDENT:
            continue
        if person.pgy_level is None:
            raise ValueError(f"resident {person.id} has no pgy_level")
        ratio = calculate_supervision_ratio(person.pgy_level, rotation.specialty, rotation.kind)
        units += _FACULTY_UNITS // ratio
    return _faculty_for(units)


def _faculty_for(units: int) -> int:
    return -(-units // _FACULTY_UNITS)


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True, slots=True)
class ValidationReport:
    valid: bool  # no violation but the advisory warnings (`ADVISORY`)
    violations: tuple[Violation, ...]
    coverage_rate: float

    @property
    def total_violations(self) -> int:
        return len(self.violations)


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


def validate(
    problem: ScheduleProblem, *, around: tuple[date, date] | None = None
) -> ValidationReport:
    """Run every rule over the schedule period (or only what an edit on `around` can affect).

    With `around=(first, last)` (clipped to the period) the rolling rules check every 28-day
    window holding a day of [first, last], and the per-block rules the blocks dated in
    [first, last]; `coverage_rate` is then over those blocks. This is exactly the full check
    of the same schedule with its period cut to [first, last]. A rolling violation whose run
    of windows reaches beyond the checked windows is reported as far as it is visible, so its
    message may differ from the full check's.

    Only assignments dated in [first-27, last+27] can matter; the rest are skipped, but the
    skip still walks all of `problem.assignments` (~15 ms for a year of 87k). A caller that
    checks one edit can load just that range and get the same answer for a fraction of it.
    Raises ValueError for an assignment naming an unknown block, person or rotation (with
    `around`: among those in reach), and for a resident without a PGY level who needs
    supervising.
    """
    ctx = _build_context(problem, around)
    ranked: list[tuple[tuple[object, ...], Violation]] = []
    for rule in RULES:
        for f in rule.check(ctx):
            violation = Violation(rule.name, rule.severity, f.message, f.person_id, f.block_id)
            key = (
                f.on,
                _RULE_ORDER[rule.name],
                -1 if f.person_id is None else f.person_id.int,
                f.tiebreak,
                -1 if f.block_id is None else f.block_id.int,
                f.message,
            )
            ranked.append((key, violation))
    ranked.sort(key=lambda item: item[0])
    violations = tuple(v for _, v in ranked)
    return ValidationReport(
        valid=all(v.rule in ADVISORY for v in violations),
        violations=violations,
        coverage_rate=_coverage_rate(ctx),
    )


def warnings_for(problem: ScheduleProblem, assignment: Assignment) -> tuple[Violation, ...]:
    """The violations adding `assignment` causes: present after, absent before.

    Checked around the assignment's date only. A violation that the assignment makes worse
    (say the same 28-day run now at 92 hours instead of 86) is reported too: its message
    changes, and the person making the edit should see the new figure.
    """
    block = problem.blocks.get(assignment.block_id)
    if block is None:
        raise ValueError(f"assignment {assignment} refers to an unknown block")
    after = replace(problem, assignments=(*problem.assignments, assignment))
    return new_violations(problem, after, around=(block.date, block.date))


def warnings_for_call(problem: ScheduleProblem, call: Call) -> tuple[Violation, ...]:
    """The violations adding `call` causes, as `warnings_for` (checked around its days)."""
    after = replace(problem, calls=(*problem.calls, call))
    return new_violations(problem, after, around=(call.start.date(), call.end.date()))


def new_violations(
    before: ScheduleProblem, after: ScheduleProblem, *, around: tuple[date, date]
) -> tuple[Violation, ...]:
    """The violations of `after` that `before` does not have, checked `around` a change."""
    seen = set(validate(before, around=around).violations)
    return tuple(v for v in validate(after, around=around).violations if v not in seen)


def _coverage_rate(ctx: RuleContext) -> float:
    staffed = [r for r, rotation in enumerate(ctx.rotations) if rotation.min_residents > 0]
    width = len(ctx.rotations)
    total = met = 0
    for c in range(len(ctx.blocks)):
        for r in staffed:
            total += 1
            met += ctx.primaries[c * width + r] >= ctx.rotations[r].min_residents
    return met / total if total else 1.0


# --------------------------------------------------------------------------- the rules


def _window_sums(row: Sequence[int], count: int) -> list[int]:
    # Prefix sums: each 28-day window is one subtraction, O(days) per person in all.
    prefix = list(accumulate(row, initial=0))
    return list(map(sub, prefix[WINDOW_DAYS : WINDOW_DAYS + count], prefix[:count]))


def _check_eighty_hours(ctx: RuleContext) -> Iterator[Finding]:
    count, origin = ctx.window_count, ctx.origin
    for p, row in ctx.hours.items():
        sums = _window_sums(row, count)
        if max(sums) <= _MAX_WINDOW_MILLIHOURS:
            continue
        over = [s for s, total in enumerate(sums) if total > _MAX_WINDOW_MILLIHOURS]
        for run_first, run_last in _runs(over):
            # The worst window of the run; max() keeps the earliest of equal ones.
            worst = max(range(run_first, run_last + 1), key=sums.__getitem__)
            start = origin + timedelta(days=worst)
            total = sums[worst] / _MILLI
            end = start + timedelta(days=_SPAN)
            excess = _num(total - MAX_WINDOW_HOURS)
            message = (
                f"{_who(ctx, p)}: {_num(total * 7 / WINDOW_DAYS)} duty hours a week averaged "
                f"over the 28 days from {start} (limit {MAX_WEEKLY_HOURS}): {_num(total)} hours to "
                f"{end}, {excess} more than the {MAX_WINDOW_HOURS} allowed"
                + _run_note(origin, run_first, run_last)
                + f": take at least {excess} hours of duty off between {start} and {end}"
            )
            yield Finding(on=start, message=message, person_id=ctx.persons[p].id)


_LONG_RUN: Final = b"\x01" * (MAX_CONSECUTIVE_DUTY_DAYS + 1)


def _check_one_in_seven(ctx: RuleContext) -> Iterator[Finding]:
    count, origin, days = ctx.window_count, ctx.origin, ctx.days
    first_day, last_day = _SPAN, _SPAN + (ctx.last - ctx.first).days
    for p, row in ctx.duty.items():
        person_id = ctx.persons[p].id
        # Days off averaged over 28 days: at most 24 duty days in every window. With no run
        # over 6 days a window always has 4 days off (4 disjoint 7-day stretches), so this
        # fires alone only when the long run lies wholly in the history before the period.
        sums = _window_sums(row, count)
        over = [s for s, total in enumerate(sums) if total > _MAX_WINDOW_DUTY_DAYS]
        for run_first, run_last in _runs(over):
            worst = max(range(run_first, run_last + 1), key=sums.__getitem__)
            start = origin + timedelta(days=worst)
            free = WINDOW_DAYS - sums[worst]
            message = (
                f"{_who(ctx, p)}: only {_count(free, 'day')} free of duty in the 28 days from "
                f"{start} to {start + timedelta(days=_SPAN)} (at least "
                f"{MIN_FREE_DAYS_PER_WINDOW} needed): free "
                f"{_count(MIN_FREE_DAYS_PER_WINDOW - free, 'more day')}"
                + _run_note(origin, run_first, run_last)
            )
            yield Finding(on=start, message=message, person_id=person_id, tiebreak=(0,))
        # Never more than 6 duty days in a row; a run may begin in the history before the
        # period, and is this period's problem when one of its days lies in [first, last].
        # bytes.find does the scanning in C.
        begin = row.find(_LONG_RUN)
        while begin >= 0:
            end = row.find(b"\x00", begin)
            end = (days if end < 0 else end) - 1
            if begin <= last_day and end >= first_day:
                run_start = origin + timedelta(days=begin)
                # The arrays stop 27 days either side of the checked dates: a run reaching
                # an edge may be longer than we can see.
                at_least = "at least " if begin == 0 or end == days - 1 else ""
                message = (
                    f"{_who(ctx, p)}: {at_least}{end - begin + 1} duty days in a row from "
                    f"{run_start} to {origin + timedelta(days=end)} (at most "
                    f"{MAX_CONSECUTIVE_DUTY_DAYS}): a day off is needed by "
                    f"{run_start + timedelta(days=MAX_CONSECUTIVE_DUTY_DAYS)}"
                )
                yield Finding(on=run_start, message=message, person_id=person_id, tiebreak=(1,))
            begin = row.find(_LONG_RUN, end + 1)


def _check_supervision(ctx: RuleContext) -> Iterator[Finding]:
    width = len(ctx.rotations)
    supervised = [r for r, rotation in enumerate(ctx.rotations) if rotation.requires_supervision]
    for c, block in enumerate(ctx.blocks):
        for r in supervised:
            k = c * width + r
            residents = ctx.primaries[k]
            needed = _faculty_for(ctx.units[k])
            present = ctx.supervisors[k]
            if not residents or present >= needed:
                continue
            rotation = ctx.rotations[r]
            levels = (ctx.pgy1[k], ctx.pgy2[k], residents - ctx.pgy1[k] - ctx.pgy2[k])
            mix = ", ".join(f"{n} PGY-{lvl}" for lvl, n in enumerate(levels, 1) if n)
            setting = " (critical care, 1:1)" if is_critical_care(rotation) else ""
            message = (
                f"{rotation.name}{setting} on {_when(block)}: {_count(residents, 'resident')} "
                f"({mix}) need {needed} supervising faculty, {present} assigned: needs "
                f"{needed - present} more supervising faculty on {_when(block)} for "
                f"{rotation.name}, or fewer residents there"
            )
            yield Finding(
                on=block.date,
                message=message,
                block_id=block.id,
                tiebreak=(_TIME_ORDER[block.time_of_day], r),
            )


def _check_double_booking(ctx: RuleContext) -> Iterator[Finding]:
    for (p, c), codes in ctx.clashes.items():
        block = ctx.blocks[c]
        message = (
            f"{_who(ctx, p)} has {len(codes)} assignments on {_when(block)} "
            f"({_rotation_names(ctx, codes)}): keep one, remove "
            f"{_count(len(codes) - 1, 'other')}"
        )
        yield Finding(
            on=block.date,
            message=message,
            person_id=ctx.persons[p].id,
            block_id=block.id,
            tiebreak=(_TIME_ORDER[block.time_of_day],),
        )


def _check_absence(ctx: RuleContext) -> Iterator[Finding]:
    dates = [block.date for block in ctx.blocks]
    # Walk each absence's days rather than every assignment: absences are few.
    hits: dict[tuple[int, int], tuple[date, date]] = {}
    for absence in ctx.problem.absences:
        p = ctx.person_at.get(absence.person_id.int)
        if p is None:
            continue  # someone this problem does not know has no assignment to clash with
        mine = ctx.occupied[p]
        span = (absence.start_date, absence.end_date)
        lo, hi = bisect_left(dates, span[0]), bisect_right(dates, span[1])
        for c in range(lo, hi):
            if mine[c] and ((p, c) not in hits or span < hits[(p, c)]):
                hits[(p, c)] = span  # the earliest absence names the clash
    for (p, c), (start, end) in hits.items():
        block = ctx.blocks[c]
        codes = ctx.clashes.get((p, c)) or [ctx.occupied[p][c]]
        message = (
            f"{_who(ctx, p)} is absent from {start} to {end} but assigned to "
            f"{_rotation_names(ctx, codes)} on {_when(block)}: hand it to someone free then "
            f"(a swap, or regenerate the schedule) or remove it"
        )
        yield Finding(
            on=block.date,
            message=message,
            person_id=ctx.persons[p].id,
            block_id=block.id,
            tiebreak=(_TIME_ORDER[block.time_of_day],),
        )


def _check_coverage(ctx: RuleContext) -> Iterator[Finding]:
    width = len(ctx.rotations)
    for c, block in enumerate(ctx.blocks):
        for r, rotation in enumerate(ctx.rotations):
            count = ctx.primaries[c * width + r]
            low, high = rotation.min_residents, rotation.max_residents
            if count < low:
                issue = f"needs at least {low}: add {low - count}"
            elif count > high:
                issue = f"allows at most {high}: move {count - high} elsewhere"
            else:
                continue
            yield Finding(
                on=block.date,
                message=f"{rotation.name} on {_when(block)} has {_count(count, 'resident')}, "
                f"{issue}",
                block_id=block.id,
                tiebreak=(_TIME_ORDER[block.time_of_day], r),
            )


def _check_approaching(ctx: RuleContext) -> Iterator[Finding]:
    count, origin = ctx.window_count, ctx.origin
    low, high = _APPROACHING_WINDOW_MILLIHOURS, _MAX_WINDOW_MILLIHOURS
    for p, row in ctx.hours.items():
        sums = _window_sums(row, count)
        near = [s for s, total in enumerate(sums) if low <= total <= high]
        for run_first, run_last in _runs(near):
            worst = max(range(run_first, run_last + 1), key=sums.__getitem__)
            start = origin + timedelta(days=worst)
            total = sums[worst] / _MILLI
            message = (
                f"{_who(ctx, p)}: {_num(total * 7 / WINDOW_DAYS)} duty hours a week averaged "
                f"over the 28 days from {start}, approaching the limit of {MAX_WEEKLY_HOURS}: "
                f"at most {_num(MAX_WINDOW_HOURS - total)} more hours fit in the 28 days to "
                f"{start + timedelta(days=_SPAN)}"
                + _run_note(origin, run_first, run_last, "at 76 a week or more")
            )
            yield Finding(on=start, message=message, person_id=ctx.persons[p].id)


def _stretches(
    shifts: list[tuple[datetime, datetime, bool]],
) -> list[tuple[datetime, datetime, bool]]:
    """Shifts merged where they overlap or touch: continuous duty, and whether it holds
    in-house call."""
    out: list[tuple[datetime, datetime, bool]] = []
    for start, end, call in sorted(shifts):
        if out and start <= out[-1][1]:
            first, last, had = out[-1]
            out[-1] = (first, max(last, end), had or call)
        else:
            out.append((start, end, call))
    return out


def _checked_span(ctx: RuleContext) -> tuple[datetime, datetime]:
    """The checked days as moments: a stretch touches them when it ends after the first and
    starts before the second."""
    first = datetime.combine(ctx.first, time())
    return first, datetime.combine(ctx.last + timedelta(days=1), time())


def _hours(span: timedelta) -> str:
    return _num(span.total_seconds() / 3600)


def _check_continuous_duty(ctx: RuleContext) -> Iterator[Finding]:
    lo, hi = _checked_span(ctx)
    for p, stretches in ctx.stretches.items():
        for start, end, call in stretches:
            if call and end - start > MAX_CONTINUOUS and start < hi and end > lo:
                latest = start + MAX_CONTINUOUS
                message = (
                    f"{_who(ctx, p)}: {_hours(end - start)} hours of continuous duty with "
                    f"in-house call from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} (at "
                    f"most 24 + 4 for transitions): end it by {latest:%Y-%m-%d %H:%M}"
                )
                yield Finding(on=start.date(), message=message, person_id=ctx.persons[p].id)


def _check_rest(ctx: RuleContext, *, after_call: bool) -> Iterator[Finding]:
    lo, hi = _checked_span(ctx)
    for p, stretches in ctx.stretches.items():
        for (start, end, call), (following, _, _) in pairwise(stretches):
            long_call = call and end - start >= LONG_CALL
            needed = REST_AFTER_LONG_CALL if long_call else REST_BETWEEN_SHIFTS
            if long_call is not after_call or following - end >= needed:
                continue
            if not (end < hi and following > lo):
                continue
            what = "in-house call of 24 hours or more" if long_call else "a shift"
            message = (
                f"{_who(ctx, p)}: {_hours(following - end)} hours free after {what} ending "
                f"{end:%Y-%m-%d %H:%M} (at least {_hours(needed)}): the next duty may start at "
                f"{end + needed:%Y-%m-%d %H:%M}"
            )
            yield Finding(on=end.date(), message=message, person_id=ctx.persons[p].id)


def _check_rest_after_call(ctx: RuleContext) -> Iterator[Finding]:
    return _check_rest(ctx, after_call=True)


def _check_rest_between_shifts(ctx: RuleContext) -> Iterator[Finding]:
    return _check_rest(ctx, after_call=False)


def _check_call_frequency(ctx: RuleContext) -> Iterator[Finding]:
    count, origin = ctx.window_count, ctx.origin
    for p, row in ctx.call_nights.items():
        sums = _window_sums(row, count)
        over = [s for s, total in enumerate(sums) if total > MAX_CALLS_PER_WINDOW]
        for run_first, run_last in _runs(over):
            worst = max(range(run_first, run_last + 1), key=sums.__getitem__)
            start = origin + timedelta(days=worst)
            message = (
                f"{_who(ctx, p)}: {sums[worst]} in-house call nights in the 28 days from {start} "
                f"to {start + timedelta(days=_SPAN)} (every third night at most: "
                f"{MAX_CALLS_PER_WINDOW}): move {sums[worst] - MAX_CALLS_PER_WINDOW} to "
                f"someone else" + _run_note(origin, run_first, run_last)
            )
            yield Finding(on=start, message=message, person_id=ctx.persons[p].id)


RULES: Final[tuple[Rule, ...]] = (
    Rule(RuleName.EIGHTY_HOUR, Severity.CRITICAL, _check_eighty_hours),
    Rule(RuleName.ONE_IN_SEVEN, Severity.HIGH, _check_one_in_seven),
    Rule(RuleName.SUPERVISION, Severity.CRITICAL, _check_supervision),
    Rule(RuleName.DOUBLE_BOOKING, Severity.CRITICAL, _check_double_booking),
    Rule(RuleName.ABSENCE, Severity.HIGH, _check_absence),
    Rule(RuleName.COVERAGE, Severity.MEDIUM, _check_coverage),
    Rule(RuleName.CONTINUOUS_DUTY, Severity.CRITICAL, _check_continuous_duty),
    Rule(RuleName.REST_AFTER_CALL, Severity.HIGH, _check_rest_after_call),
    Rule(RuleName.REST_BETWEEN_SHIFTS, Severity.LOW, _check_rest_between_shifts),
    Rule(RuleName.CALL_FREQUENCY, Severity.HIGH, _check_call_frequency),
    Rule(RuleName.EIGHTY_HOUR_APPROACHING, Severity.LOW, _check_approaching),
)
# Warnings that do not make a schedule invalid.
ADVISORY: Final = frozenset({RuleName.REST_BETWEEN_SHIFTS, RuleName.EIGHTY_HOUR_APPROACHING})


# --------------------------------------------------------------------------- helpers


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Maximal runs of consecutive integers in a sorted list, as (first, last)."""
    if not indices:
        return
    first = prev = indices[0]
    for i in indices[1:]:
        if i != prev + 1:
            yield first, prev
            first = i
        prev = i
    yield first, prev


def _run_note(origin: date, run_first: int, run_last: int, state: str = "over") -> str:
    # The worst window is what to fix first; the run says how far the problem reaches.
    if run_first == run_last:
        return ""
    return (
        f"; the {run_last - run_first + 1} windows starting "
        f"{origin + timedelta(days=run_first)} through {origin + timedelta(days=run_last)} "
        f"are all {state}"
    )


def _rotation_names(ctx: RuleContext, codes: list[int]) -> str:
    return ", ".join(sorted(ctx.rotations[(code - 1) // 2].name for code in codes))


def _who(ctx: RuleContext, p: int) -> str:
    person = ctx.persons[p]
    return person.name or f"person {person.id}"


def _when(block: Block) -> str:
    return f"{block.date} {block.time_of_day.value}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _num(value: float) -> str:
    # 86.5 -> "86.5", 84.0 -> "84", 80.125 -> "80.13": readable and never "80" for 80.1.
    return f"{value:.2f}".rstrip("0").rstrip(".")
