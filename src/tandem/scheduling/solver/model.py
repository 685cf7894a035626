"""The CP-SAT model of one 4-week block of a schedule (used by `search.py`).

`Prepared` indexes a `ScheduleProblem` once (people, period blocks by day, absences, the duty
already fixed before each block); `build_chunk` turns one run of days into a CP-SAT model whose
hard constraints are the rule engine's (`rules/`), with the same integer arithmetic:
hours in thousandths, 320 h and 24 duty days per 28-day window, 6 duty days in a row,
supervision in quarters of a faculty member.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Final
from uuid import UUID

from ortools.sat.python import cp_model

from tandem.scheduling.domain import (
    DEFAULT_HOURS_PER_BLOCK,
    AssignmentRole,
    Block,
    Call,
    CallKind,
    CallPlan,
    Person,
    PersonType,
    Rotation,
    ScheduleProblem,
    TimeOfDay,
)
from tandem.scheduling.rules import (  # WINDOW_DAYS is re-exported (see __all__)
    BLOCK_STARTS,
    MAX_CALLS_PER_WINDOW,
    MAX_CONSECUTIVE_DUTY_DAYS,
    MAX_WINDOW_HOURS,
    MIN_FREE_DAYS_PER_WINDOW,
    WINDOW_DAYS,
    is_critical_care,
)

__all__ = [
    "CALL_WEIGHT",
    "MAX_CALLS_PER_WINDOW",
    "MAX_WINDOW_DUTY_DAYS",
    "MAX_WINDOW_MILLIHOURS",
    "MILLI",
    "RUN",
    "SPAN",
    "WINDOW_DAYS",
    "CallChoice",
    "CallShape",
    "Choice",
    "ChunkModel",
    "Prepared",
    "available_faculty",
    "block_days",
    "block_key",
    "build_chunk",
    "call_day_millihours",
    "call_fairness",
    "dates",
    "fairness",
    "fixed_rows",
    "millihours",
    "prepare",
    "present_residents",
    "supervision_units",
]

MILLI: Final = 1000  # hours as integer thousandths, exactly as the rule engine sums them
MAX_WINDOW_MILLIHOURS: Final = MAX_WINDOW_HOURS * MILLI
MAX_WINDOW_DUTY_DAYS: Final = WINDOW_DAYS - MIN_FREE_DAYS_PER_WINDOW  # 24
SPAN: Final = WINDOW_DAYS - 1  # a window [d, d+27]
RUN: Final = MAX_CONSECUTIVE_DUTY_DAYS + 1  # any 7 consecutive days hold a day off
_TIME_ORDER: Final = {TimeOfDay.AM: 0, TimeOfDay.PM: 1}

# Objective weights: total duty blocks matter more than weekend blocks (a weekend block is
# also a duty block, so a weekend imbalance already shows in the first term).
DUTY_WEIGHT: Final = 2
WEEKEND_WEIGHT: Final = 1
# Call fairness over the academic year: calls, weekend calls and holiday calls per resident
# (carried over from earlier schedules), each spread beyond 1 weighing this much.
CALL_WEIGHT: Final = (2, 1, 1)


Choice = tuple[int, int, int]  # (resident index, block index, rotation index)
CallChoice = tuple[int, int]  # (resident index, day index in the chunk): call that night


def block_key(block: Block) -> tuple[date, int, str]:
    return (block.date, _TIME_ORDER[block.time_of_day], str(block.id))


def millihours(rotation: Rotation | None) -> int:
    hours = rotation.hours_per_block if rotation is not None else DEFAULT_HOURS_PER_BLOCK
    return round(hours * MILLI)


def supervision_units(rotation: Rotation, resident: Person) -> int:
    """Quarters of a faculty member one resident needs (4 = one faculty member each).

    The same numbers as `rules.required_faculty` (4 // ratio): 4 in critical care, 2 for a
    PGY-1, 1 for PGY-2/3.
    """
    if is_critical_care(rotation):
        return 4
    return 2 if resident.pgy_level == 1 else 1


def call_day_millihours(call: Call) -> list[tuple[date, int]]:
    """The duty hours (thousandths) a call puts on each day it touches, exactly as the rule
    engine counts them: in-house call split at midnights, home call its worked hours on the
    day it starts."""
    if call.kind is CallKind.HOME:
        return [(call.start.date(), round((call.worked_hours or 0) * MILLI))]
    out = []
    moment = call.start
    while moment < call.end:
        upto = min(datetime.combine(moment.date() + timedelta(days=1), time()), call.end)
        out.append((moment.date(), round((upto - moment).total_seconds() * MILLI / 3600)))
        moment = upto
    return out


@dataclass(frozen=True, slots=True)
class CallShape:
    """The generator's call, from `CallPlan`: a night's call starts on its day at
    `start_hour` and ends by 07:00 the next morning; `head` and `tail` are its millihours on
    the two days; `overlaps[(time_of_day, rotation index)]` says whether that block of the
    night's day overlaps the call (the resident on call cannot work it)."""

    plan: CallPlan
    head: int
    tail: int
    overlaps: frozenset[tuple[str, int]]

    def call_on(self, person_id: UUID, day: date) -> Call:
        start = datetime.combine(day, time(self.plan.start_hour))
        return Call(person_id, start, start + timedelta(hours=self.plan.hours))

    @classmethod
    def of(cls, plan: CallPlan, rotations: list[Rotation]) -> CallShape:
        if plan.start_hour + plan.hours > 24 + BLOCK_STARTS[TimeOfDay.AM].hour:
            raise ValueError("generated call must end by 07:00 the next morning")
        split = dict(call_day_millihours(CallShape(plan, 0, 0, frozenset()).call_on(_NOBODY, _DAY)))
        start = float(plan.start_hour)
        end = start + plan.hours
        overlaps = set()
        for time_of_day, begins in BLOCK_STARTS.items():
            for ki, rotation in enumerate(rotations):
                b0 = begins.hour + begins.minute / 60
                if b0 < end and start < b0 + rotation.hours_per_block:
                    overlaps.add((time_of_day.value, ki))
        return cls(
            plan,
            split.get(_DAY, 0),
            split.get(_DAY + timedelta(days=1), 0),
            frozenset(overlaps),
        )


_NOBODY = UUID(int=0)
_DAY = date(2000, 1, 1)


@dataclass(slots=True)
class Prepared:
    """The problem indexed once, plus the duty fixed so far (history, then solved blocks)."""

    start: date
    end: date
    residents: list[Person]
    faculty: list[Person]
    rotations: list[Rotation]
    blocks_by_day: dict[date, list[Block]]
    absent: dict[UUID, set[date]]
    # Fixed duty per resident: day -> millihours (a day present means a duty day).
    fixed_hours: dict[UUID, dict[date, int]] = field(default_factory=dict)
    # Faculty supervising blocks so far (history and solved blocks), for fair naming.
    faculty_blocks: dict[UUID, int] = field(default_factory=dict)
    faculty_weekends: dict[UUID, int] = field(default_factory=dict)
    # Call: the generator's (None: it assigns none); duty on any day of the arrays, period
    # included, that is not a block (calls fixed or solved so far, moonlighting): hours,
    # duty days (moonlighting makes none) and in-house call nights per resident.
    call: CallShape | None = None
    extra_hours: dict[UUID, dict[date, int]] = field(default_factory=dict)
    extra_duty: dict[UUID, set[date]] = field(default_factory=dict)
    call_nights: dict[UUID, set[date]] = field(default_factory=dict)
    # Calls, weekend calls and holiday calls per resident: carried over, then solved.
    call_counts: dict[UUID, list[int]] = field(default_factory=dict)
    # Duty blocks and weekend duty blocks per resident solved in earlier chunks of this solve,
    # so fairness holds over the whole period (a year), not only within each 4-week chunk.
    duty_counts: dict[UUID, list[int]] = field(default_factory=dict)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def is_absent(self, person_id: UUID, day: date) -> bool:
        return day in self.absent.get(person_id, ())

    def fix(self, person_id: UUID, day: date, hours: int) -> None:
        row = self.fixed_hours.setdefault(person_id, {})
        row[day] = row.get(day, 0) + hours

    def carried_duty(self) -> tuple[list[int], list[int]]:
        """Per resident (in `residents` order): duty blocks and weekend duty blocks so far."""
        rows = [self.duty_counts.get(r.id, [0, 0]) for r in self.residents]
        return [row[0] for row in rows], [row[1] for row in rows]

    def count_duty(self, person_id: UUID, day: date) -> None:
        row = self.duty_counts.setdefault(person_id, [0, 0])
        row[0] += 1
        row[1] += day.weekday() >= 5

    def credit_absences(self, present: set[int]) -> None:
        """After a chunk: a resident away during it (not in `present`) is credited up to the
        least count of those present, so their absence is not made up afterwards (the
        fairness minimum left them out of the chunk; carrying the gap would load them with
        every block they missed)."""
        if not present:
            return
        rows = [self.duty_counts.setdefault(r.id, [0, 0]) for r in self.residents]
        for k in range(2):
            least = min(rows[ri][k] for ri in present)
            for ri, row in enumerate(rows):
                if ri not in present:
                    row[k] = max(row[k], least)

    def add_extra(self, person_id: UUID, day: date, hours: int, *, duty: bool) -> None:
        row = self.extra_hours.setdefault(person_id, {})
        row[day] = row.get(day, 0) + hours
        if duty:
            self.extra_duty.setdefault(person_id, set()).add(day)

    def add_call(self, call: Call, *, count: bool) -> None:
        """A call as fixed duty for the windows (and, with `count`, for call fairness)."""
        for day, hours in call_day_millihours(call):
            if hours or call.kind is CallKind.IN_HOUSE:
                self.add_extra(call.person_id, day, hours, duty=True)
        if call.kind is not CallKind.IN_HOUSE:
            return
        night = call.start.date()
        self.call_nights.setdefault(call.person_id, set()).add(night)
        if count:
            counts = self.call_counts.setdefault(call.person_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += night.weekday() >= 5
            holidays = self.call.plan.holidays if self.call is not None else frozenset()
            counts[2] += night in holidays

    def on_call(self, person_id: UUID, day: date) -> bool:
        return day in self.call_nights.get(person_id, ())


def prepare(problem: ScheduleProblem) -> Prepared:
    start, end = problem.start_date, problem.end_date
    if start > end:
        raise ValueError("the schedule period ends before it starts")
    people = sorted(problem.people.values(), key=lambda p: (p.name, str(p.id)))
    residents = [p for p in people if p.type is PersonType.RESIDENT]
    for r in residents:
        if r.pgy_level not in (1, 2, 3):
            raise ValueError(f"resident {r.id} has no valid pgy_level (1-3)")
    faculty = [p for p in people if p.type is PersonType.FACULTY]
    rotations = sorted(problem.rotations.values(), key=lambda r: (r.name, str(r.id)))
    blocks_by_day: dict[date, list[Block]] = defaultdict(list)
    for b in sorted(problem.blocks.values(), key=block_key):
        if start <= b.date <= end:
            blocks_by_day[b.date].append(b)
    origin = start - timedelta(days=SPAN)
    # Settled duty: assignments dated in the 27 days before the period (the history) and the
    # 27 days after it (a later schedule settled first) are fixed and count for the rolling
    # windows; assignments inside the period are replaced by the solver's. Absences are read
    # over the same days: a call on the last night must not run into one starting after it.
    horizon = end + timedelta(days=SPAN)
    absent: dict[UUID, set[date]] = defaultdict(set)
    for ab in problem.absences:
        day = max(ab.start_date, origin)
        while day <= min(ab.end_date, horizon):
            absent[ab.person_id].add(day)
            day += timedelta(days=1)
    prep = Prepared(
        start=start,
        end=end,
        residents=residents,
        faculty=faculty,
        rotations=rotations,
        blocks_by_day=dict(blocks_by_day),
        absent=dict(absent),
    )
    for a in problem.assignments:
        block = problem.blocks.get(a.block_id)
        person = problem.people.get(a.person_id)
        if block is None or person is None or not origin <= block.date <= horizon:
            continue
        if start <= block.date <= end:
            continue
        if person.type is PersonType.RESIDENT:
            prep.fix(a.person_id, block.date, millihours(problem.rotations.get(a.rotation_id)))
        elif a.role is AssignmentRole.SUPERVISING:
            prep.faculty_blocks[a.person_id] = prep.faculty_blocks.get(a.person_id, 0) + 1
    if problem.call_plan is not None and problem.call_plan.per_night > 0:
        prep.call = CallShape.of(problem.call_plan, rotations)
        for person_id, carried in problem.call_plan.carried.items():
            prep.call_counts[person_id] = [carried.calls, carried.weekends, carried.holidays]
    # Calls and moonlighting already recorded (other schedules' settled calls) are fixed duty
    # wherever they fall, the period included.
    resident_ids = {r.id for r in residents}
    for call in problem.calls:
        if call.person_id in resident_ids:
            prep.add_call(call, count=False)
    for entry in problem.moonlighting:
        if entry.person_id not in resident_ids:
            continue
        base, extra = divmod(round(entry.hours * MILLI), 7)
        for i in range(7):
            day = entry.week_start + timedelta(days=i)
            prep.add_extra(entry.person_id, day, base + (i < extra), duty=False)
    return prep


@dataclass(slots=True)
class ChunkModel:
    model: cp_model.CpModel
    first: date
    last: date
    blocks: list[Block]
    # (resident index, block index, rotation index) -> bool "works this rotation this block"
    x: dict[Choice, cp_model.IntVar]
    # (resident index, chunk day index) -> bool "on call that night"
    c: dict[CallChoice, cp_model.IntVar] = field(default_factory=dict)
    # Diagnosis only: missing residents per (block index, rotation index), missing faculty
    # per block index, missing residents on call per chunk day index.
    coverage_slack: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    faculty_slack: dict[int, cp_model.IntVar] = field(default_factory=dict)
    call_slack: dict[int, cp_model.IntVar] = field(default_factory=dict)
    variables: int = 0
    objective: cp_model.LinearExprT = 0  # what the model minimises (kept to restore it)


def dates(first: date, last: date) -> list[date]:
    """The days first..last, both included."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def block_days(prep: Prepared, first: date, last: date) -> list[Block]:
    """The blocks of days [first, last] in order: block indices in a chunk refer to this."""
    return [b for d in dates(first, last) for b in prep.blocks_by_day.get(d, ())]


def present_residents(prep: Prepared, days: list[date]) -> set[int]:
    """Residents with no absence in `days`: the ones the fairness minimum applies to."""
    return {
        ri for ri, r in enumerate(prep.residents) if not any(prep.is_absent(r.id, d) for d in days)
    }


def fairness(counts: list[int], weekends: list[int], present: set[int]) -> int:
    """The objective's value for given per-resident counts (as the model computes it)."""
    if not present:
        return 0
    total = 0
    for weight, values in ((DUTY_WEIGHT, counts), (WEEKEND_WEIGHT, weekends)):
        total += weight * max(0, max(values) - min(values[ri] for ri in present) - 1)
    return total


def call_fairness(totals: list[list[int]], present: set[int]) -> int:
    """The call part of the objective for per-resident [calls, weekend calls, holiday calls]
    (carried over and solved): each spread beyond 1, weighted by `CALL_WEIGHT`."""
    if not present or not totals:
        return 0
    total = 0
    for k, weight in enumerate(CALL_WEIGHT):
        values = [row[k] for row in totals]
        total += weight * max(0, max(values) - min(values[ri] for ri in present) - 1)
    return total


def available_faculty(prep: Prepared, day: date) -> int:
    return sum(1 for f in prep.faculty if not prep.is_absent(f.id, day))


def build_chunk(
    prep: Prepared,
    first: date,
    last: date,
    *,
    diagnose: bool = False,
    hint: set[Choice] | None = None,
    call_hint: set[CallChoice] | None = None,
) -> ChunkModel:
    """The model of days [first, last]; duty before `first` is read from `prep.fixed_hours`.

    With `diagnose`, coverage minimums and the faculty headcount become soft (slack variables)
    and the objective is the total slack, so the solution names what cannot be met. `hint`
    (the chosen (resident, block, rotation) triples of a valid schedule) becomes a complete
    solution hint: every variable, auxiliaries included, so CP-SAT can use it as is;
    `call_hint` its (resident, chunk day) calls.
    """
    build = _Build.start(prep, first, last, hint, call_hint)
    for ri, resident in enumerate(prep.residents):
        _resident_limits(build, ri, resident)
    call_slack = _call_coverage(build, diagnose=diagnose)
    coverage_slack: dict[tuple[int, int], cp_model.IntVar] = {}
    faculty_slack: dict[int, cp_model.IntVar] = {}
    for bi, block in enumerate(build.blocks):
        needs = []
        for ki, rotation in enumerate(prep.rotations):
            slack = _coverage(build, bi, ki, rotation, diagnose=diagnose)
            if slack is not None:
                coverage_slack[(bi, ki)] = slack
            need = _supervision(build, bi, ki, rotation)
            if need is not None:
                needs.append(need)
        slack = _faculty_headcount(build, bi, block, needs, diagnose=diagnose)
        if slack is not None:
            faculty_slack[bi] = slack

    m = build.model
    chunk = ChunkModel(
        model=m,
        first=first,
        last=last,
        blocks=build.blocks,
        x=build.x,
        c=build.c,
        coverage_slack=coverage_slack,  # empty unless `diagnose`
        faculty_slack=faculty_slack,
        call_slack=call_slack,
        variables=build.variables,
    )
    if diagnose:
        # A missing resident weighs 2, a missing faculty member 1: when either explains the
        # gap, "add a faculty member" is the more actionable answer.
        chunk.objective = cp_model.LinearExpr.weighted_sum(
            [*coverage_slack.values(), *faculty_slack.values(), *call_slack.values()],
            [2] * len(coverage_slack) + [1] * len(faculty_slack) + [2] * len(call_slack),
        )
        m.minimize(chunk.objective)
        return chunk
    objective = _fairness(build)
    if objective:
        chunk.objective = cp_model.LinearExpr.sum(objective)
        m.minimize(chunk.objective)
    return chunk


@dataclass(frozen=True, slots=True)
class _Hint:
    """A valid schedule's choices as a complete solution hint: the value of every variable,
    auxiliaries included, follows from which (resident, block, rotation) triples it chose.
    Without a schedule (`chosen` None) nothing is hinted."""

    model: cp_model.CpModel
    chosen: set[Choice] | None
    calls: set[CallChoice] | None = None

    def on(self, key: Choice) -> bool:
        return self.chosen is not None and key in self.chosen

    def on_call(self, key: CallChoice) -> bool:
        return self.calls is not None and key in self.calls

    def count(self, keys: list[Choice]) -> int:
        return sum(1 for key in keys if self.on(key))

    def add(self, var: cp_model.IntVar, value: int) -> None:
        if self.chosen is not None:
            self.model.add_hint(var, value)


@dataclass(slots=True)
class _Build:
    """A chunk's model while it is built, with the indexes its constraint families share."""

    prep: Prepared
    model: cp_model.CpModel
    hint: _Hint
    days: list[date]
    blocks: list[Block]
    hours: list[int]  # millihours per block of each rotation
    max_day_hours: int  # the most millihours one day can hold
    # (resident index, block index, rotation index) -> bool "works this rotation this block"
    x: dict[Choice, cp_model.IntVar] = field(default_factory=dict)
    # Per (block, rotation): the residents' variables, for coverage and supervision.
    slot: dict[tuple[int, int], list[tuple[int, cp_model.IntVar]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # Per resident: the keys of their block variables, all and on weekends (for fairness).
    duty_blocks: list[list[Choice]] = field(default_factory=list)
    weekend_blocks: list[list[Choice]] = field(default_factory=list)
    # Call: (resident, chunk day) -> "on call that night"
    c: dict[CallChoice, cp_model.IntVar] = field(default_factory=dict)
    variables: int = 0

    @classmethod
    def start(
        cls,
        prep: Prepared,
        first: date,
        last: date,
        chosen: set[Choice] | None,
        calls: set[CallChoice] | None = None,
    ) -> _Build:
        model = cp_model.CpModel()
        hours = [millihours(rot) for rot in prep.rotations]
        most_blocks = max((len(bs) for bs in prep.blocks_by_day.values()), default=0)
        return cls(
            prep=prep,
            model=model,
            hint=_Hint(model, chosen, calls),
            days=dates(first, last),
            blocks=block_days(prep, first, last),
            hours=hours,
            max_day_hours=most_blocks * max(hours, default=0),
        )

    @property
    def length(self) -> int:
        """Days are indexed from first-27, so the fixed days before the chunk are 0..26, the
        chunk's days 27..27+n-1 and the 27 days after it follow; windows are slices of arrays
        of this length."""
        return SPAN + len(self.days) + SPAN


def _resident_limits(build: _Build, ri: int, resident: Person) -> None:
    """A resident's block and call variables and their duty-day, duty-hour and call limits."""
    fixed_duty, fixed_hours = _fixed(build, resident)
    calls = _call_nights(build, ri, resident)
    shape = build.prep.call
    call_hours = shape.head + shape.tail if shape is not None and calls else 0
    # The 80-hour windows are implied by the 24-duty-day limit when no day can hold more
    # than 320/24 h (6-hour blocks: 24 x 12 h = 288 h); then they are left out.
    # Hours fixed on the chunk's own days (moonlighting, settled calls) add to what its
    # blocks may hold: then the windows are always checked.
    n = len(build.days)
    top = build.max_day_hours + call_hours
    hours_needed = (
        any(fixed_hours[SPAN : SPAN + n])
        or max(top, *fixed_hours) * MAX_WINDOW_DUTY_DAYS > MAX_WINDOW_MILLIHOURS
    )
    duty, day_hours = _duty_days(
        build, ri, resident, hours_needed=hours_needed, calls=calls, fixed_duty=fixed_duty
    )
    if not build.duty_blocks[ri] and not calls:
        return
    _duty_day_limits(build, fixed_duty, duty)
    if hours_needed:
        _duty_hour_limits(build, fixed_hours, day_hours, top)
    if calls:
        _call_frequency(build, resident, calls)


def fixed_rows(
    prep: Prepared, resident: Person, first: date, n: int
) -> tuple[list[int], list[int]]:
    """The duty days (0/1) and millihours fixed around the `n` days from `first`, indexed
    from first-27 over SPAN + n + SPAN days: the 27 days before them (history and blocks
    solved so far) and, after them, the settled duty past the period's end. Days of the
    period after the chunk are not solved yet and read as free; their own chunk checks them."""
    origin = first - timedelta(days=SPAN)
    length = SPAN + n + SPAN
    fixed_duty = [0] * length
    fixed_hours = [0] * length
    for d, h in prep.fixed_hours.get(resident.id, {}).items():
        i = (d - origin).days
        if 0 <= i < SPAN or (d > prep.end and SPAN + n <= i < length):
            fixed_duty[i], fixed_hours[i] = 1, h
    # Calls and moonlighting count on every day, the chunk's included.
    for d, h in prep.extra_hours.get(resident.id, {}).items():
        i = (d - origin).days
        if 0 <= i < length:
            fixed_hours[i] += h
    for d in prep.extra_duty.get(resident.id, ()):
        i = (d - origin).days
        if 0 <= i < length:
            fixed_duty[i] = 1
    return fixed_duty, fixed_hours


def _fixed(build: _Build, resident: Person) -> tuple[list[int], list[int]]:
    return fixed_rows(build.prep, resident, build.days[0], len(build.days))


def _call_nights(build: _Build, ri: int, resident: Person) -> dict[int, cp_model.IntVar]:
    """The resident's call variables per chunk day, where a call is possible: present that
    day and the next (the call ends then), no call the night before or after (fixed), no
    fixed block duty the next day (the post-call day is free); at most one call in any two
    nights."""
    prep, shape = build.prep, build.prep.call
    if shape is None:
        return {}
    m = build.model
    blocked = prep.fixed_hours.get(resident.id, {})
    calls: dict[int, cp_model.IntVar] = {}
    for di, day in enumerate(build.days):
        after, before = day + timedelta(days=1), day - timedelta(days=1)
        if (
            prep.is_absent(resident.id, day)
            or prep.is_absent(resident.id, after)
            or prep.on_call(resident.id, before)
            or prep.on_call(resident.id, after)
            or after in blocked
        ):
            continue
        v = m.new_bool_var("")
        calls[di] = build.c[(ri, di)] = v
        build.variables += 1
        build.hint.add(v, build.hint.on_call((ri, di)))
        if di - 1 in calls:
            m.add(calls[di - 1] + v <= 1)
    return calls


def _duty_days(
    build: _Build,
    ri: int,
    resident: Person,
    *,
    hours_needed: bool,
    calls: dict[int, cp_model.IntVar],
    fixed_duty: list[int],
) -> tuple[list[cp_model.IntVar | None], list[cp_model.IntVar | None]]:
    """The resident's block variables, at most one rotation per block, and per day of the
    chunk a duty bool and (when the 80-hour windows are needed) the day's millihours. A
    night's call is duty on its day and the next (its hours split at midnight); the day
    after a call holds no block, and a block overlapping the call is not worked."""
    m, prep, rotations = build.model, build.prep, build.prep.rotations
    shape = prep.call
    head, tail = (shape.head, shape.tail) if shape is not None else (0, 0)
    overlaps = shape.overlaps if shape is not None else frozenset()
    duty: list[cp_model.IntVar | None] = [None] * build.length
    day_hours: list[cp_model.IntVar | None] = [None] * build.length
    mine: list[Choice] = []
    weekend: list[Choice] = []
    bi = 0
    for di, day in enumerate(build.days):
        day_blocks = prep.blocks_by_day.get(day, ())
        tonight, last_night = calls.get(di), calls.get(di - 1)
        hint_tonight = build.hint.on_call((ri, di))
        hint_last_night = build.hint.on_call((ri, di - 1))
        works = (
            bool(day_blocks)
            and not prep.is_absent(resident.id, day)
            # After a call fixed the night before the chunk: the post-call day is free.
            and not prep.on_call(resident.id, day - timedelta(days=1))
        )
        if not works and tonight is None and last_night is None:
            bi += len(day_blocks)
            continue
        dd = m.new_bool_var("")
        # A day already on duty (a fixed call reaching into it) counts as a constant.
        duty[SPAN + di] = None if fixed_duty[SPAN + di] else dd
        build.variables += 1
        day_keys: list[Choice] = []
        for block in day_blocks if works else ():
            here = [m.new_bool_var("") for _ in rotations]
            for ki, v in enumerate(here):
                build.x[(ri, bi, ki)] = v
                build.slot[(bi, ki)].append((ri, v))
                build.hint.add(v, build.hint.on((ri, bi, ki)))
                day_keys.append((ri, bi, ki))
                if tonight is not None and (block.time_of_day.value, ki) in overlaps:
                    m.add(v + tonight <= 1)
            build.variables += len(here)
            # At most one rotation per block, and only on a duty day: one constraint
            # does both (the duty bool may be 1 on a free day: that only tightens the
            # day-off limits, so no reverse link is needed).
            m.add(cp_model.LinearExpr.sum(here) <= dd)
            if last_night is not None:  # post-call: no block the day after a call
                m.add(cp_model.LinearExpr.sum(here) + last_night <= 1)
            bi += 1
        if not works:
            bi += len(day_blocks)
        if tonight is not None:
            m.add(dd >= tonight)
        if last_night is not None and tail:
            m.add(dd >= last_night)
        build.hint.add(
            dd,
            build.hint.count(day_keys) > 0 or hint_tonight or (hint_last_night and tail > 0),
        )
        mine.extend(day_keys)
        if day.weekday() >= 5:
            weekend.extend(day_keys)
        if hours_needed:
            # One integer per duty day keeps each 28-day window at 28 terms instead of
            # every block variable in it (10x fewer terms, a faster presolve).
            top = build.max_day_hours + head + tail
            hv = m.new_int_var(0, top, "")
            terms = [build.x[k] for k in day_keys]
            weights = [build.hours[k[2]] for k in day_keys]
            if tonight is not None:
                terms.append(tonight)
                weights.append(head)
            if last_night is not None:
                terms.append(last_night)
                weights.append(tail)
            m.add(hv >= cp_model.LinearExpr.weighted_sum(terms, weights))
            day_hours[SPAN + di] = hv
            build.hint.add(
                hv,
                sum(build.hours[k[2]] for k in day_keys if build.hint.on(k))
                + head * hint_tonight
                + tail * hint_last_night,
            )
    # The last night's call reaches into the day after the chunk.
    n = len(build.days)
    final = calls.get(n - 1)
    if final is not None and tail:
        if not fixed_duty[SPAN + n]:
            duty[SPAN + n] = final
        if hours_needed:
            hv = m.new_int_var(0, tail, "")
            m.add(hv >= tail * final)
            day_hours[SPAN + n] = hv
            build.hint.add(hv, tail * build.hint.on_call((ri, n - 1)))
    build.duty_blocks.append(mine)
    build.weekend_blocks.append(weekend)
    return duty, day_hours


def _call_frequency(build: _Build, resident: Person, calls: dict[int, cp_model.IntVar]) -> None:
    """In-house call at most every third night averaged: at most 9 call nights in every
    28-day window holding a night of the chunk (fixed calls counted)."""
    origin = build.days[0] - timedelta(days=SPAN)
    fixed = [0] * build.length
    for night in build.prep.call_nights.get(resident.id, ()):
        i = (night - origin).days
        if 0 <= i < build.length:
            fixed[i] = 1
    row: list[cp_model.IntVar | None] = [None] * build.length
    for di, v in calls.items():
        row[SPAN + di] = v
    for w in range(0, SPAN + len(build.days)):
        hi = min(w + WINDOW_DAYS, build.length)
        here = [v for v in row[w:hi] if v is not None]
        const = sum(fixed[w:hi])
        if here and const + len(here) > MAX_CALLS_PER_WINDOW:
            build.model.add(cp_model.LinearExpr.sum(here) <= MAX_CALLS_PER_WINDOW - const)


def _call_coverage(build: _Build, *, diagnose: bool) -> dict[int, cp_model.IntVar]:
    """`per_night` residents on call every night of the chunk; with `diagnose` softly, and
    the slack (the residents missing) per night is returned."""
    shape = build.prep.call
    if shape is None:
        return {}
    m = build.model
    need = shape.plan.per_night
    slack: dict[int, cp_model.IntVar] = {}
    for di in range(len(build.days)):
        here = [v for (ri, d), v in build.c.items() if d == di]
        total = cp_model.LinearExpr.sum(here)
        if diagnose:
            missing = m.new_int_var(0, need, "")
            m.add(total + missing >= need)
            m.add(total <= need)
            hinted = sum(1 for (ri, d) in build.c if d == di and build.hint.on_call((ri, d)))
            build.hint.add(missing, max(0, need - hinted))
            slack[di] = missing
        else:
            m.add(total == need)
    return slack


def _duty_day_limits(
    build: _Build, fixed_duty: list[int], duty: list[cp_model.IntVar | None]
) -> None:
    """1 in 7 averaged: at most 24 duty days in every 28-day window holding a day of the
    chunk; never more than 6 in a row (every 7 consecutive days hold a day off)."""
    for length, limit in ((WINDOW_DAYS, MAX_WINDOW_DUTY_DAYS), (RUN, RUN - 1)):
        for w in range(SPAN + 1 - length, build.length):
            lo, hi = max(w, 0), min(w + length, build.length)
            const = sum(fixed_duty[lo:hi])
            here = [v for v in duty[lo:hi] if v is not None]
            if here and const + len(here) > limit:
                build.model.add(cp_model.LinearExpr.sum(here) <= limit - const)


def _duty_hour_limits(
    build: _Build, fixed_hours: list[int], day_hours: list[cp_model.IntVar | None], top: int
) -> None:
    """80 hours a week averaged: at most 320 h in every 28-day window. Skipped when no
    window can exceed it (e.g. 6-hour blocks: 24 duty days x 12 h = 288 h); `top` is the
    most one day's variable can hold (blocks and call)."""
    for w in range(0, build.length):
        hi = min(w + WINDOW_DAYS, build.length)
        const = sum(fixed_hours[w:hi])
        terms = [v for v in day_hours[w:hi] if v is not None]
        cap = min(len(terms), MAX_WINDOW_DUTY_DAYS) * top
        if terms and const + cap > MAX_WINDOW_MILLIHOURS:
            build.model.add(cp_model.LinearExpr.sum(terms) <= MAX_WINDOW_MILLIHOURS - const)


def _coverage(
    build: _Build, bi: int, ki: int, rotation: Rotation, *, diagnose: bool
) -> cp_model.IntVar | None:
    """The rotation's minimum and maximum of residents in the block; with `diagnose` the
    minimum is soft and its slack (the residents missing) is returned."""
    m = build.model
    members = build.slot.get((bi, ki), [])
    total = cp_model.LinearExpr.sum([v for _, v in members])
    slack = None
    if rotation.min_residents > 0:
        if diagnose:
            slack = m.new_int_var(0, rotation.min_residents, "")
            m.add(total + slack >= rotation.min_residents)
            hinted = build.hint.count([(ri, bi, ki) for ri, _ in members])
            build.hint.add(slack, max(0, rotation.min_residents - hinted))
        else:
            m.add(total >= rotation.min_residents)
    if members:
        m.add(total <= rotation.max_residents)
    return slack


def _supervision(
    build: _Build, bi: int, ki: int, rotation: Rotation
) -> tuple[cp_model.IntVar, int] | None:
    """The faculty members the rotation's residents in the block need (whole members, of
    `supervision_units` quarters), with its hinted value; None when it needs none."""
    members = build.slot.get((bi, ki), [])
    if not rotation.requires_supervision or not members:
        return None
    m = build.model
    n_faculty = available_faculty(build.prep, build.blocks[bi].date)
    need = m.new_int_var(0, max(n_faculty, len(members)), "")
    build.variables += 1
    weights = [supervision_units(rotation, build.prep.residents[ri]) for ri, _ in members]
    m.add(4 * need >= cp_model.LinearExpr.weighted_sum([v for _, v in members], weights))
    hinted_units = sum(
        w for w, (ri, _) in zip(weights, members, strict=True) if build.hint.on((ri, bi, ki))
    )
    hinted = -(-hinted_units // 4)
    build.hint.add(need, hinted)
    return need, hinted


def _faculty_headcount(
    build: _Build,
    bi: int,
    block: Block,
    needs: list[tuple[cp_model.IntVar, int]],
    *,
    diagnose: bool,
) -> cp_model.IntVar | None:
    """The faculty the block's rotations need fit in the faculty present; with `diagnose`
    softly, and the slack (the faculty missing) is returned."""
    if not needs:
        return None
    m = build.model
    n_faculty = available_faculty(build.prep, block.date)
    faculty_needed = sum(need for need, _ in needs)
    if not diagnose:
        m.add(faculty_needed <= n_faculty)
        return None
    residents_here = sum(len(build.slot.get((bi, k), [])) for k in range(len(build.prep.rotations)))
    slack = m.new_int_var(0, residents_here, "")
    m.add(faculty_needed <= n_faculty + slack)
    build.hint.add(slack, max(0, sum(hinted for _, hinted in needs) - n_faculty))
    return slack


def _fairness(build: _Build) -> list[cp_model.LinearExprT]:
    """Fairness, count-based: the spread (max - min) of duty blocks and of weekend duty
    blocks over the residents, counted from the solve's start (earlier chunks carried in
    through `Prepared.duty_counts`), beyond 1 (a spread of 1 is as even as integer counts can be
    when the work does not divide, and accepting it makes the optimum far easier to reach).
    A resident absent during the chunk may work less (left out of the minimum), never more."""
    m = build.model
    present = present_residents(build.prep, build.days)
    objective: list[cp_model.LinearExprT] = []
    for weight, per_resident, carried in zip(
        (DUTY_WEIGHT, WEEKEND_WEIGHT),
        (build.duty_blocks, build.weekend_blocks),
        build.prep.carried_duty(),
        strict=True,
    ):
        chunk_top = max((len(keys) for keys in per_resident), default=0)
        if not present:
            continue
        if chunk_top == 0:
            # Nothing to decide: the carried spread is a constant (kept, so the objective
            # means the same as `fairness`).
            low = min(carried[ri] for ri in present)
            objective.append(weight * max(0, max(carried, default=0) - low - 1))
            continue
        top = chunk_top + max(carried, default=0)
        most = m.new_int_var(0, top, "")
        least = m.new_int_var(0, top, "")
        excess = m.new_int_var(0, top, "")
        for ri, keys in enumerate(per_resident):
            count = cp_model.LinearExpr.sum([build.x[k] for k in keys]) + carried[ri]
            m.add(count <= most)
            if ri in present:
                m.add(count >= least)
        m.add(excess >= most - least - 1)
        objective.append(weight * excess)
        hinted = [build.hint.count(keys) + carried[ri] for ri, keys in enumerate(per_resident)]
        h_hi = max(hinted)
        h_lo = min(hinted[ri] for ri in present)
        build.hint.add(most, h_hi)
        build.hint.add(least, h_lo)
        build.hint.add(excess, max(0, h_hi - h_lo - 1))
    if build.c and present:
        objective.extend(_call_fairness(build, present))
    return objective


def _call_fairness(build: _Build, present: set[int]) -> list[cp_model.LinearExprT]:
    """Calls, weekend calls and holiday calls per resident over the academic year: what
    was carried over and solved before this chunk plus this chunk's, each spread beyond 1."""
    m, prep = build.model, build.prep
    assert prep.call is not None
    holidays = prep.call.plan.holidays
    kinds: list[Callable[[date], bool]] = [
        lambda day: True,
        lambda day: day.weekday() >= 5,
        lambda day: day in holidays,
    ]
    objective: list[cp_model.LinearExprT] = []
    for k, (weight, counts) in enumerate(zip(CALL_WEIGHT, kinds, strict=True)):
        carried = [prep.call_counts.get(r.id, [0, 0, 0])[k] for r in prep.residents]
        mine: list[list[cp_model.IntVar]] = [[] for _ in prep.residents]
        hinted = list(carried)
        for (ri, di), v in build.c.items():
            if counts(build.days[di]):
                mine[ri].append(v)
                hinted[ri] += build.hint.on_call((ri, di))
        if not any(mine):
            # Nothing to decide in this chunk: the carried spread is a constant (kept, so
            # the objective means the same as `call_fairness`).
            low = min(carried[ri] for ri in present)
            objective.append(weight * max(0, max(carried) - low - 1))
            continue
        top = max(carried) + len(build.days)
        most = m.new_int_var(0, top, "")
        least = m.new_int_var(0, top, "")
        excess = m.new_int_var(0, top, "")
        for ri, terms in enumerate(mine):
            total = cp_model.LinearExpr.sum(terms) + carried[ri]
            m.add(total <= most)
            if ri in present:
                m.add(total >= least)
        m.add(excess >= most - least - 1)
        objective.append(weight * excess)
        h_hi, h_lo = max(hinted), min(hinted[ri] for ri in present)
        build.hint.add(most, h_hi)
        build.hint.add(least, h_lo)
        build.hint.add(excess, max(0, h_hi - h_lo - 1))
    return objective
