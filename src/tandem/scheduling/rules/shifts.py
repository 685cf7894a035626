"""The shift rules for residents with call: continuous duty, rest after call, rest between
shifts (their calls and blocks merged into stretches of continuous duty)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise

from tandem.scheduling.rules.context import Finding, RuleContext
from tandem.scheduling.rules.limits import (
    LONG_CALL,
    MAX_CONTINUOUS,
    REST_AFTER_LONG_CALL,
    REST_BETWEEN_SHIFTS,
)
from tandem.scheduling.rules.text import _at, _num, _who


def _checked_span(ctx: RuleContext) -> tuple[datetime, datetime]:
    """The checked days as moments: a stretch touches them when it ends after the first and
    starts before the second."""
    first = datetime.combine(ctx.first, time())
    return first, datetime.combine(ctx.last + timedelta(days=1), time())


@lru_cache(maxsize=1024)
def _hours(span: timedelta) -> str:
    # Cached: the same few lengths (6, 12, 18 hours...) recur in thousands of messages.
    return _num(span.total_seconds() / 3600)


def _check_continuous_duty(ctx: RuleContext) -> Iterator[Finding]:
    lo, hi = _checked_span(ctx)
    for p, stretches in ctx.stretches.items():
        for start, end, call in stretches:
            if call and end - start > MAX_CONTINUOUS and start < hi and end > lo:
                latest = start + MAX_CONTINUOUS
                message = (
                    f"{_who(ctx, p)}: {_hours(end - start)} hours of continuous duty with "
                    f"in-house call from {_at(start)} to {_at(end)} (at "
                    f"most 24 + 4 for transitions): end it by {_at(latest)}"
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
                f"{_at(end)} (at least {_hours(needed)}): the next duty may start at "
                f"{_at(end + needed)}"
            )
            yield Finding(on=end.date(), message=message, person_id=ctx.persons[p].id)


def _check_rest_after_call(ctx: RuleContext) -> Iterator[Finding]:
    return _check_rest(ctx, after_call=True)


def _check_rest_between_shifts(ctx: RuleContext) -> Iterator[Finding]:
    return _check_rest(ctx, after_call=False)
