"""The rolling 28-day rules: 80 hours, 1 in 7 (and 6 days in a row), approaching 80 hours,
call frequency. Each reads every window off prefix sums of a per-day array."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from itertools import accumulate
from operator import sub
from typing import Final

from tandem.scheduling.rules.context import Finding, RuleContext
from tandem.scheduling.rules.limits import (
    _APPROACHING_WINDOW_MILLIHOURS,
    _MAX_WINDOW_DUTY_DAYS,
    _MAX_WINDOW_MILLIHOURS,
    _MILLI,
    _SPAN,
    MAX_CALLS_PER_WINDOW,
    MAX_CONSECUTIVE_DUTY_DAYS,
    MAX_WEEKLY_HOURS,
    MAX_WINDOW_HOURS,
    MIN_FREE_DAYS_PER_WINDOW,
    WINDOW_DAYS,
)
from tandem.scheduling.rules.text import _count, _num, _run_note, _runs, _who


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
