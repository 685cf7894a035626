"""Per-person totals of a generated schedule, for its statistics (`GET /schedules/{id}`):
what coordinators compare to see that duty, weekends and call are shared fairly."""

from collections.abc import Iterable
from typing import Any

from tandem.scheduling.domain import Assignment, Call, CallKind, ScheduleProblem
from tandem.scheduling.solver.model import MILLI, call_day_millihours

_WEEKEND = 5  # date.weekday(): Saturday and Sunday


def person_totals(
    problem: ScheduleProblem, assignments: Iterable[Assignment], calls: Iterable[Call]
) -> dict[str, dict[str, Any]]:
    """Per person with duty in the period (by id): blocks, weekend blocks, duty hours (blocks
    and call, as the rule engine counts them), in-house calls, weekend and holiday calls and,
    when the schedule assigns call, the calls of the academic year so far (this period
    included)."""
    out: dict[str, dict[str, Any]] = {}
    holidays = problem.call_plan.holidays if problem.call_plan is not None else frozenset()

    def row(person_id: Any) -> dict[str, Any]:
        key = str(person_id)
        if key not in out:
            person = problem.people.get(person_id)
            out[key] = {
                "name": person.name if person is not None else "",
                "blocks": 0,
                "weekend_blocks": 0,
                "duty_hours": 0.0,
                "calls": 0,
                "weekend_calls": 0,
                "holiday_calls": 0,
            }
        return out[key]

    for a in assignments:
        block, rotation = problem.blocks.get(a.block_id), problem.rotations.get(a.rotation_id)
        if block is None or rotation is None:
            continue
        totals = row(a.person_id)
        totals["blocks"] += 1
        totals["weekend_blocks"] += block.date.weekday() >= _WEEKEND
        totals["duty_hours"] += rotation.hours_per_block
    for call in calls:
        totals = row(call.person_id)
        totals["duty_hours"] += sum(h for _, h in call_day_millihours(call)) / MILLI
        if call.kind is CallKind.IN_HOUSE:
            totals["calls"] += 1
            totals["weekend_calls"] += call.start.weekday() >= _WEEKEND
            totals["holiday_calls"] += call.start.date() in holidays
    plan = problem.call_plan
    carried = {} if plan is None else {str(p): c.calls for p, c in plan.carried.items()}
    for key, totals in out.items():
        totals["duty_hours"] = round(totals["duty_hours"], 2)
        if plan is not None:
            totals["calls_in_academic_year"] = totals["calls"] + carried.get(key, 0)
    return out
