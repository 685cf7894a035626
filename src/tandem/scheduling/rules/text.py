"""How violations read: names, dates, counts and numbers in messages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from tandem.scheduling.domain import (
    Block,
)

if TYPE_CHECKING:
    from tandem.scheduling.rules.context import RuleContext


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


def _at(moment: datetime) -> str:
    # "2027-03-04 19:00"; isoformat is C code, several times faster than strftime, which
    # matters in a year with thousands of rest findings.
    return moment.isoformat(" ", "minutes")
