"""Quick necessary checks run before CP-SAT, and the words of an infeasibility explanation.

Each check is a counting argument that any valid schedule must satisfy, in milliseconds: it
catches the common infeasible inputs (too few faculty, too many people away at once) long
before a solver could prove them, and it names the requirement in a coordinator's terms.
"""

from __future__ import annotations

from datetime import date, timedelta
from itertools import accumulate
from typing import Final

from tandem.scheduling.domain import Block, Rotation
from tandem.scheduling.rules import is_critical_care
from tandem.scheduling.solver.model import (
    MAX_WINDOW_DUTY_DAYS,
    MAX_WINDOW_MILLIHOURS,
    MILLI,
    RUN,
    SPAN,
    WINDOW_DAYS,
    Prepared,
    available_faculty,
    block_key,
    dates,
    millihours,
)

_SHOWN: Final = 3  # shortfalls named in one explanation; the rest are counted


def when(block: Block) -> str:
    return f"{block.date} {block.time_of_day.value}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def quick_checks(prep: Prepared) -> str | None:
    """The first requirement that certainly cannot be met, or None if none was found."""
    for check in (_rotation_limits, _call_headcount, _history, _per_block, _rolling_capacity):
        found = check(prep)
        if found is not None:
            return found
    return None


def _rotation_limits(prep: Prepared) -> str | None:
    for rot in prep.rotations:
        if rot.min_residents > rot.max_residents:
            return (
                f"Rotation {rot.name} needs at least {rot.min_residents} residents but allows "
                f"at most {rot.max_residents}: raise its maximum or lower its minimum"
            )
    return None


def _call_headcount(prep: Prepared) -> str | None:
    # No one takes call two nights running, so every two nights need 2 x per_night people.
    if prep.call is None or prep.days < 2:
        return None
    need = 2 * prep.call.plan.per_night
    if len(prep.residents) < need:
        return (
            f"In-house call for {prep.call.plan.per_night} residents a night needs at least "
            f"{need} residents (no one is on call two nights running), and there are "
            f"{len(prep.residents)}: add residents or lower the schedule's call_per_night"
        )
    return None


def _history(prep: Prepared) -> str | None:
    # Windows holding a period day but whose fixed days (before the period) already break
    # a limit: no assignment inside the period can repair that.
    for r in prep.residents:
        fixed = prep.fixed_hours.get(r.id, {})
        if not fixed:
            continue
        for offset in range(SPAN):
            w = prep.start - timedelta(days=SPAN - offset)
            before = [w + timedelta(days=i) for i in range(SPAN - offset)]
            duty = sum(1 for d in before if d in fixed)
            hours = sum(fixed.get(d, 0) for d in before)
            if duty > MAX_WINDOW_DUTY_DAYS or hours > MAX_WINDOW_MILLIHOURS:
                return (
                    f"{r.name or r.id} already has {duty} duty days and {hours / MILLI:g} "
                    f"hours in the 28 days from {w}, before the schedule starts: the "
                    f"ACGME limits (24 days, 320 hours) cannot be met; correct the earlier "
                    f"schedule"
                )
    return None


def _min_faculty(prep: Prepared, rotations: list[Rotation], pgy23: int) -> tuple[int, str]:
    """A lower bound on the faculty the minimum coverage needs, and its breakdown."""
    critical = sum(r.min_residents for r in rotations if is_critical_care(r))
    others = [r for r in rotations if not is_critical_care(r)]
    # Each rotation alone: at best all PGY-2/3 (4 per faculty member).
    per_rotation = sum(-(-r.min_residents // 4) for r in others)
    # All together: PGY-1 residents fill the places PGY-2/3 residents cannot (2 per faculty).
    total = sum(r.min_residents for r in others)
    pooled = -(-(total + max(0, total - pgy23)) // 4)
    parts = [
        f"{r.name} {r.min_residents if is_critical_care(r) else -(-r.min_residents // 4)}"
        for r in rotations
        if r.min_residents > 0
    ]
    return critical + max(per_rotation, pooled), ", ".join(parts)


def _resting(prep: Prepared) -> dict[date, int]:
    """Per period day, the residents the duty before the period forces off that day: after
    6 duty days in a row, or with 24 duty days already in a 28-day window holding it."""
    out: dict[date, int] = {}
    for r in prep.residents:
        fixed = prep.fixed_hours.get(r.id, {})
        if not fixed:
            continue
        run = 0
        while prep.start - timedelta(days=run + 1) in fixed:
            run += 1
        off = {prep.start} if run >= RUN - 1 else set()
        for k in range(SPAN):
            day = prep.start + timedelta(days=k)
            window = (day - timedelta(days=SPAN - i) for i in range(SPAN - k))
            if sum(1 for d in window if d in fixed) >= MAX_WINDOW_DUTY_DAYS:
                off.add(day)
        for day in off:
            if not prep.is_absent(r.id, day):
                out[day] = out.get(day, 0) + 1
    return out


def _per_block(prep: Prepared) -> str | None:
    supervised = [r for r in prep.rotations if r.requires_supervision and r.min_residents > 0]
    staffed = [r for r in prep.rotations if r.min_residents > 0]
    resting = _resting(prep)
    for day in sorted(prep.blocks_by_day):
        here = [r for r in prep.residents if not prep.is_absent(r.id, day)]
        away = len(prep.residents) - len(here)
        rest = resting.get(day, 0)
        # Who rests is not known here, only how many: the PGY mix below stays optimistic.
        can = len(here) - rest
        why = f"{away} absent" + (
            f", {rest} resting after their duty before {prep.start}" if rest else ""
        )
        for block in prep.blocks_by_day[day]:
            for rot in staffed:
                if rot.min_residents > can:
                    return (
                        f"Rotation {rot.name} needs {_plural(rot.min_residents, 'resident')} on "
                        f"{when(block)} but only {can} can be there ({why})"
                    )
            need = sum(r.min_residents for r in staffed)
            if need > can:
                mix = ", ".join(f"{r.name} {r.min_residents}" for r in staffed)
                return (
                    f"The rotations' minimum coverage on {when(block)} needs {need} residents "
                    f"({mix}) but only {can} can be there ({why})"
                )
            n_faculty = available_faculty(prep, day)
            pgy23 = sum(1 for r in here if r.pgy_level != 1)
            faculty_need, mix = _min_faculty(prep, supervised, pgy23)
            if faculty_need > n_faculty:
                gone = len(prep.faculty) - n_faculty
                return (
                    f"The minimum coverage on {when(block)} needs at least {faculty_need} "
                    f"supervising faculty ({mix}) but only {n_faculty} can be there "
                    f"({gone} absent): add faculty or lower the rotations' minimums"
                )
    return None


def _rolling_capacity(prep: Prepared) -> str | None:
    """Minimum coverage against what the residents may work in any 7 or 28 days.

    Windows that start before the period count the duty already done in their first days
    (a resident 5 days into a run may work only 1 of the period's first 2 days).
    """
    days = dates(prep.start, prep.end)
    per_block = sum(r.min_residents for r in prep.rotations)
    per_block_hours = sum(r.min_residents * millihours(r) for r in prep.rotations)
    demand_blocks = [len(prep.blocks_by_day.get(d, ())) * per_block for d in days]
    demand_hours = [len(prep.blocks_by_day.get(d, ())) * per_block_hours for d in days]
    # Per resident and day: the blocks they could work (0 when absent), and its prefix count.
    sizes_by_day = [
        [0 if prep.is_absent(r.id, d) else len(prep.blocks_by_day.get(d, ())) for d in days]
        for r in prep.residents
    ]
    present_days = [[0, *accumulate(1 if size else 0 for size in row)] for row in sizes_by_day]
    # Per resident, the duty days and hours fixed before the period, as suffix sums:
    # before[ri][k] = duty in the k days before the start.
    before_days: list[list[int]] = []
    before_hours: list[list[int]] = []
    for r in prep.residents:
        fixed = prep.fixed_hours.get(r.id, {})
        back = [prep.start - timedelta(days=k) for k in range(1, SPAN + 1)]
        before_days.append([0, *accumulate(1 if d in fixed else 0 for d in back)])
        before_hours.append([0, *accumulate(fixed.get(d, 0) for d in back)])
    history = any(prep.fixed_hours.get(r.id) for r in prep.residents)
    block_counts = {len(prep.blocks_by_day.get(d, ())) for d in days}
    uniform = len(block_counts) == 1
    per_day = next(iter(block_counts)) if uniform else 0
    for length, max_days, rule in (
        (RUN, RUN - 1, "no one works more than 6 days in a row"),
        (WINDOW_DAYS, MAX_WINDOW_DUTY_DAYS, "everyone has 4 days off in 28"),
    ):
        first_start = -(length - 1) if history else 0
        for i in range(first_start, len(days) - length + 1):
            lo, hi = max(i, 0), min(i + length, len(days))
            if lo >= hi:
                continue
            need = sum(demand_blocks[lo:hi])
            if need == 0:
                continue
            capacity = hours_capacity = free = 0
            for ri in range(len(prep.residents)):
                done = before_days[ri][-i] if i < 0 else 0
                allowed = max(0, max_days - done)
                if uniform:
                    # Every day has the same number of blocks: the best `allowed` days are
                    # any of them, so a count of days present is enough (O(1) a window).
                    present = present_days[ri][hi] - present_days[ri][lo]
                    best = per_day * min(present, allowed)
                else:
                    sizes = sorted(sizes_by_day[ri][lo:hi], reverse=True)
                    present = sum(1 for size in sizes if size)
                    best = sum(sizes[:allowed])
                if present:
                    free += 1
                    done_hours = before_hours[ri][-i] if i < 0 else 0
                    hours_capacity += max(0, MAX_WINDOW_MILLIHOURS - done_hours)
                capacity += best
            first_day, last_day = days[lo], days[hi - 1]
            if need > capacity:
                away = len(prep.residents) - free
                earlier = (
                    f", counting the duty from {prep.start + timedelta(days=i)} before the schedule"
                    if i < 0
                    else ""
                )
                return (
                    f"From {first_day} to {last_day} the rotations' minimum coverage needs "
                    f"{need} resident blocks but the {free} residents who are not away can "
                    f"work at most {capacity} ({rule}{earlier}; {away} residents absent): "
                    f"move absences or lower the rotations' minimums"
                )
            hours_need = sum(demand_hours[lo:hi])
            if length == WINDOW_DAYS and hours_need > hours_capacity:
                return (
                    f"From {first_day} to {last_day} the rotations' minimum coverage needs "
                    f"{hours_need / MILLI:g} duty hours but the {free} residents who are not "
                    f"away may work at most {hours_capacity / MILLI:g} (80 hours a week)"
                )
    return None


def explain_slack(
    prep: Prepared,
    blocks: list[Block],
    coverage: dict[tuple[int, int], int],
    faculty: dict[int, int],
    first: date,
    last: date,
) -> str:
    """Words for the shortfalls a diagnosis pass found (slack values > 0)."""
    items: list[tuple[tuple[object, ...], str]] = []
    for (bi, ki), missing in coverage.items():
        if missing <= 0:
            continue
        rot, block = prep.rotations[ki], blocks[bi]
        can = rot.min_residents - missing
        items.append(
            (
                (block_key(block), 0, rot.name),
                f"Rotation {rot.name} needs {_plural(rot.min_residents, 'resident')} on "
                f"{when(block)} but only {can} can be there while the other requirements are "
                f"met (the "
                f"others are absent, or at their duty-hour or day-off limits)",
            )
        )
    for bi, missing in faculty.items():
        if missing <= 0:
            continue
        block = blocks[bi]
        have = available_faculty(prep, block.date)
        items.append(
            (
                (block_key(block), 1, ""),
                f"The minimum coverage on {when(block)} needs {have + missing} supervising "
                f"faculty but only {have} can be there while the other requirements are met",
            )
        )
    if not items:
        return (
            f"The ACGME limits cannot all be met from {first} to {last} given the duty "
            f"already scheduled before {first}"
        )
    items.sort(key=lambda item: item[0])
    shown = "; ".join(text for _, text in items[:_SHOWN])
    rest = len(items) - _SHOWN
    if rest > 0:
        shown += f"; and {_plural(rest, 'more shortfall')} until {last}"
    return shown
