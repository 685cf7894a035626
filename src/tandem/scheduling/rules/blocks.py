"""The per-block rules: supervision, double booking, absence, coverage."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Final

from tandem.scheduling.rules.context import Finding, RuleContext
from tandem.scheduling.rules.limits import _TIME_ORDER
from tandem.scheduling.rules.text import _at, _count, _rotation_names, _when, _who
from tandem.scheduling.rules.units import _faculty_for, is_critical_care

# A call ending at midnight does not touch the next day.
_INSTANT: Final = timedelta(microseconds=1)


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
    yield from _calls_during_absences(ctx)


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


def _calls_during_absences(ctx: RuleContext) -> Iterator[Finding]:
    """A call (in-house or home) starting on a checked day and touching a day of the
    person's absence."""
    if not ctx.problem.calls or not ctx.problem.absences:
        return
    away: dict[int, list[tuple[date, date]]] = {}
    for absence in ctx.problem.absences:
        away.setdefault(absence.person_id.int, []).append((absence.start_date, absence.end_date))
    for call in ctx.problem.calls:
        spans = away.get(call.person_id.int)
        if spans is None or not ctx.first <= call.start.date() <= ctx.last:
            continue
        first, last = call.start.date(), (call.end - _INSTANT).date()
        clash = min((span for span in spans if span[0] <= last and first <= span[1]), default=None)
        p = ctx.person_at.get(call.person_id.int)
        if clash is None or p is None:
            continue
        message = (
            f"{_who(ctx, p)} is absent from {clash[0]} to {clash[1]} but on {call.kind.value} "
            f"call from {_at(call.start)} to {_at(call.end)}: give the call "
            f"to someone free then or remove it"
        )
        yield Finding(
            on=first,
            message=message,
            person_id=call.person_id,
            tiebreak=(2, call.start.isoformat()),
        )
