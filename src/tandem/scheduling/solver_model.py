"""The CP-SAT model of one 4-week block of a schedule (used by `solver.py`).

`Prepared` indexes a `ScheduleProblem` once (people, period blocks by day, absences, the duty
already fixed before each block); `build_chunk` turns one run of days into a CP-SAT model whose
hard constraints are the rule engine's (`rules.py`), with the same integer arithmetic:
hours in thousandths, 320 h and 24 duty days per 28-day window, 6 duty days in a row,
supervision in quarters of a faculty member.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final
from uuid import UUID

from ortools.sat.python import cp_model

from tandem.scheduling.domain import (
    DEFAULT_HOURS_PER_BLOCK,
    AssignmentRole,
    Block,
    Person,
    PersonType,
    Rotation,
    ScheduleProblem,
    TimeOfDay,
)
from tandem.scheduling.rules import (  # WINDOW_DAYS is re-exported (see __all__)
    MAX_CONSECUTIVE_DUTY_DAYS,
    MAX_WINDOW_HOURS,
    MIN_FREE_DAYS_PER_WINDOW,
    WINDOW_DAYS,
    is_critical_care,
)

__all__ = [
    "MAX_WINDOW_DUTY_DAYS",
    "MAX_WINDOW_MILLIHOURS",
    "MILLI",
    "RUN",
    "SPAN",
    "WINDOW_DAYS",
    "ChunkModel",
    "Prepared",
    "available_faculty",
    "block_days",
    "block_key",
    "build_chunk",
    "fairness",
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

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def is_absent(self, person_id: UUID, day: date) -> bool:
        return day in self.absent.get(person_id, ())

    def fix(self, person_id: UUID, day: date, hours: int) -> None:
        row = self.fixed_hours.setdefault(person_id, {})
        row[day] = row.get(day, 0) + hours


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
    absent: dict[UUID, set[date]] = defaultdict(set)
    for ab in problem.absences:
        day = max(ab.start_date, origin)
        while day <= min(ab.end_date, end):
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
    # History: assignments dated in the 27 days before the period are fixed and count for
    # the rolling windows; assignments inside the period are replaced by the solver's.
    for a in problem.assignments:
        block = problem.blocks.get(a.block_id)
        person = problem.people.get(a.person_id)
        if block is None or person is None or not origin <= block.date < start:
            continue
        if person.type is PersonType.RESIDENT:
            prep.fix(a.person_id, block.date, millihours(problem.rotations.get(a.rotation_id)))
        elif a.role is AssignmentRole.SUPERVISING:
            prep.faculty_blocks[a.person_id] = prep.faculty_blocks.get(a.person_id, 0) + 1
    return prep


@dataclass(slots=True)
class ChunkModel:
    model: cp_model.CpModel
    first: date
    last: date
    blocks: list[Block]
    # (resident index, block index, rotation index) -> bool "works this rotation this block"
    x: dict[tuple[int, int, int], cp_model.IntVar]
    # Diagnosis only: missing residents per (block index, rotation index), missing faculty
    # per block index.
    coverage_slack: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    faculty_slack: dict[int, cp_model.IntVar] = field(default_factory=dict)
    variables: int = 0
    objective: cp_model.LinearExprT = 0  # what the model minimises (kept to restore it)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def block_days(prep: Prepared, first: date, last: date) -> list[Block]:
    """The blocks of days [first, last] in order: block indices in a chunk refer to this."""
    return [b for d in _days(first, last) for b in prep.blocks_by_day.get(d, ())]


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


def available_faculty(prep: Prepared, day: date) -> int:
    return sum(1 for f in prep.faculty if not prep.is_absent(f.id, day))


def build_chunk(
    prep: Prepared,
    first: date,
    last: date,
    *,
    diagnose: bool = False,
    hint: set[tuple[int, int, int]] | None = None,
) -> ChunkModel:
    """The model of days [first, last]; duty before `first` is read from `prep.fixed_hours`.

    With `diagnose`, coverage minimums and the faculty headcount become soft (slack variables)
    and the objective is the total slack, so the solution names what cannot be met. `hint`
    (the chosen (resident, block, rotation) triples of a valid schedule) becomes a complete
    solution hint: every variable, auxiliaries included, so CP-SAT can use it as is.
    """
    m = cp_model.CpModel()
    days = _days(first, last)
    n_days = len(days)
    blocks = block_days(prep, first, last)
    rotations = prep.rotations
    hours = [millihours(rot) for rot in rotations]
    max_day_hours = max((len(bs) for bs in prep.blocks_by_day.values()), default=0) * max(
        hours, default=0
    )
    x: dict[tuple[int, int, int], cp_model.IntVar] = {}
    # Per (block, rotation): the residents' variables, for coverage and supervision.
    slot: dict[tuple[int, int], list[tuple[int, cp_model.IntVar]]] = defaultdict(list)
    counts: list[list[cp_model.IntVar]] = []
    weekend_counts: list[list[cp_model.IntVar]] = []
    n_vars = 0
    hinted_count = [0] * len(prep.residents)
    hinted_weekend = [0] * len(prep.residents)
    # Days are indexed from `origin` = first-27, so the fixed days are 0..26 and the block's
    # days 27..27+n_days-1; windows are slices of these arrays.
    origin = first - timedelta(days=SPAN)
    for ri, r in enumerate(prep.residents):
        fixed = prep.fixed_hours.get(r.id, {})
        fixed_duty = [0] * (SPAN + n_days)
        fixed_hours = [0] * (SPAN + n_days)
        for d, h in fixed.items():
            i = (d - origin).days
            if 0 <= i < SPAN:
                fixed_duty[i], fixed_hours[i] = 1, h
        # The 80-hour windows are implied by the 24-duty-day limit when no day can hold more
        # than 320/24 h (6-hour blocks: 24 x 12 h = 288 h); then they are left out.
        hours_needed = (
            max(max_day_hours, *fixed_hours) * MAX_WINDOW_DUTY_DAYS > MAX_WINDOW_MILLIHOURS
        )
        duty: list[cp_model.IntVar | None] = [None] * (SPAN + n_days)
        day_hours: list[cp_model.LinearExprT | None] = [None] * (SPAN + n_days)
        mine: list[cp_model.IntVar] = []
        weekend: list[cp_model.IntVar] = []
        bi = 0
        for di, day in enumerate(days):
            day_blocks = prep.blocks_by_day.get(day, ())
            if prep.is_absent(r.id, day) or not day_blocks:
                bi += len(day_blocks)
                continue
            dd = m.new_bool_var("")
            duty[SPAN + di] = dd
            hinted_duty, hinted_hours = False, 0
            n_vars += 1
            day_vars: list[cp_model.IntVar] = []
            for _ in day_blocks:
                here = [m.new_bool_var("") for _ in rotations]
                for ki, v in enumerate(here):
                    x[(ri, bi, ki)] = v
                    slot[(bi, ki)].append((ri, v))
                    if hint is not None:
                        on = (ri, bi, ki) in hint
                        m.add_hint(v, on)
                        if on:
                            hinted_duty = True
                            hinted_hours += hours[ki]
                            hinted_count[ri] += 1
                            if day.weekday() >= 5:
                                hinted_weekend[ri] += 1
                n_vars += len(here)
                day_vars.extend(here)
                # At most one rotation per block, and only on a duty day: one constraint
                # does both (the duty bool may be 1 on a free day: that only tightens the
                # day-off limits, so no reverse link is needed).
                m.add(cp_model.LinearExpr.sum(here) <= dd)
                bi += 1
            if hint is not None:
                m.add_hint(dd, hinted_duty)
            mine.extend(day_vars)
            if day.weekday() >= 5:
                weekend.extend(day_vars)
            if hours_needed:
                # One integer per duty day keeps each 28-day window at 28 terms instead of
                # every block variable in it (10x fewer terms, a faster presolve).
                hv = m.new_int_var(0, max_day_hours, "")
                m.add(hv >= cp_model.LinearExpr.weighted_sum(day_vars, hours * len(day_blocks)))
                day_hours[SPAN + di] = hv
                if hint is not None:
                    m.add_hint(hv, hinted_hours)
        counts.append(mine)
        weekend_counts.append(weekend)
        if not mine:
            continue
        # 1 in 7 averaged: at most 24 duty days in every 28-day window holding a day of the
        # block; never more than 6 in a row (every 7 consecutive days hold a day off).
        for length, limit in ((WINDOW_DAYS, MAX_WINDOW_DUTY_DAYS), (RUN, RUN - 1)):
            for w in range(SPAN + 1 - length, SPAN + n_days):
                lo, hi = max(w, 0), min(w + length, SPAN + n_days)
                const = sum(fixed_duty[lo:hi])
                here = [v for v in duty[lo:hi] if v is not None]
                if here and const + len(here) > limit:
                    m.add(cp_model.LinearExpr.sum(here) <= limit - const)
        # 80 hours a week averaged: at most 320 h in every 28-day window. Skipped when no
        # window can exceed it (e.g. 6-hour blocks: 24 duty days x 12 h = 288 h).
        if hours_needed:
            for w in range(0, SPAN + n_days):
                hi = min(w + WINDOW_DAYS, SPAN + n_days)
                const = sum(fixed_hours[w:hi])
                terms = [v for v in day_hours[w:hi] if v is not None]
                cap = min(len(terms), MAX_WINDOW_DUTY_DAYS) * max_day_hours
                if terms and const + cap > MAX_WINDOW_MILLIHOURS:
                    m.add(cp_model.LinearExpr.sum(terms) <= MAX_WINDOW_MILLIHOURS - const)

    # Coverage and supervision per block.
    coverage_slack: dict[tuple[int, int], cp_model.IntVar] = {}
    faculty_slack: dict[int, cp_model.IntVar] = {}
    for bi, b in enumerate(blocks):
        n_faculty = available_faculty(prep, b.date)
        needs: list[cp_model.IntVar] = []
        hinted_faculty = 0
        for ki, rot in enumerate(rotations):
            members = slot.get((bi, ki), [])
            total = cp_model.LinearExpr.sum([v for _, v in members])
            if rot.min_residents > 0:
                if diagnose:
                    s = m.new_int_var(0, rot.min_residents, "")
                    m.add(total + s >= rot.min_residents)
                    coverage_slack[(bi, ki)] = s
                    if hint is not None:
                        hinted_n = sum(1 for ri, _ in members if (ri, bi, ki) in hint)
                        m.add_hint(s, max(0, rot.min_residents - hinted_n))
                else:
                    m.add(total >= rot.min_residents)
            if members:
                m.add(total <= rot.max_residents)
            if rot.requires_supervision and members:
                y = m.new_int_var(0, max(n_faculty, len(members)), "")
                n_vars += 1
                weights = [supervision_units(rot, prep.residents[ri]) for ri, _ in members]
                m.add(4 * y >= cp_model.LinearExpr.weighted_sum([v for _, v in members], weights))
                if hint is not None:
                    hinted_units = sum(
                        w
                        for w, (ri, _) in zip(weights, members, strict=True)
                        if (ri, bi, ki) in hint
                    )
                    m.add_hint(y, -(-hinted_units // 4))
                    hinted_faculty += -(-hinted_units // 4)
                needs.append(y)
        if needs:
            if diagnose:
                s = m.new_int_var(
                    0, sum(len(slot.get((bi, k), [])) for k in range(len(rotations))), ""
                )
                faculty_slack[bi] = s
                m.add(sum(needs) <= n_faculty + s)
                if hint is not None:
                    m.add_hint(s, max(0, hinted_faculty - n_faculty))
            else:
                m.add(sum(needs) <= n_faculty)

    chunk = ChunkModel(model=m, first=first, last=last, blocks=blocks, x=x, variables=n_vars)
    if diagnose:
        chunk.coverage_slack = coverage_slack
        chunk.faculty_slack = faculty_slack
        # A missing resident weighs 2, a missing faculty member 1: when either explains the
        # gap, "add a faculty member" is the more actionable answer.
        chunk.objective = cp_model.LinearExpr.weighted_sum(
            [*coverage_slack.values(), *faculty_slack.values()],
            [2] * len(coverage_slack) + [1] * len(faculty_slack),
        )
        m.minimize(chunk.objective)
        return chunk

    # Fairness, count-based: the spread (max - min) of duty blocks and of weekend duty blocks
    # over the residents, beyond 1 (a spread of 1 is as even as integer counts can be when
    # the work does not divide, and accepting it makes the optimum far easier to reach).
    # A resident absent during the block may work less (left out of the minimum), never more.
    present = present_residents(prep, days)
    objective: list[cp_model.LinearExprT] = []
    for weight, per_resident, hinted in (
        (DUTY_WEIGHT, counts, hinted_count),
        (WEEKEND_WEIGHT, weekend_counts, hinted_weekend),
    ):
        top = max((len(c) for c in per_resident), default=0)
        if top == 0 or not present:
            continue
        most = m.new_int_var(0, top, "")
        least = m.new_int_var(0, top, "")
        excess = m.new_int_var(0, top, "")
        for ri, c in enumerate(per_resident):
            count = cp_model.LinearExpr.sum(c)
            m.add(count <= most)
            if ri in present:
                m.add(count >= least)
        m.add(excess >= most - least - 1)
        objective.append(weight * excess)
        if hint is not None:
            h_hi = max(hinted)
            h_lo = min(hinted[ri] for ri in present)
            m.add_hint(most, h_hi)
            m.add_hint(least, h_lo)
            m.add_hint(excess, max(0, h_hi - h_lo - 1))
    if objective:
        chunk.objective = cp_model.LinearExpr.sum(objective)
        m.minimize(chunk.objective)
    return chunk
