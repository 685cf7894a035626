"""`validate` and the warnings of an edit: every rule over one `RuleContext`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Final

from tandem.scheduling.domain import (
    Assignment,
    Call,
    RuleName,
    ScheduleProblem,
    Severity,
    Violation,
)
from tandem.scheduling.rules.blocks import (
    _check_absence,
    _check_coverage,
    _check_double_booking,
    _check_supervision,
)
from tandem.scheduling.rules.context import Rule, RuleContext, _build_context
from tandem.scheduling.rules.limits import _RULE_ORDER
from tandem.scheduling.rules.rolling import (
    _check_approaching,
    _check_call_frequency,
    _check_eighty_hours,
    _check_one_in_seven,
)
from tandem.scheduling.rules.shifts import (
    _check_continuous_duty,
    _check_rest_after_call,
    _check_rest_between_shifts,
)


@dataclass(frozen=True, slots=True)
class ValidationReport:
    valid: bool  # no violation but the advisory warnings (`ADVISORY`)
    violations: tuple[Violation, ...]
    coverage_rate: float

    @property
    def total_violations(self) -> int:
        return len(self.violations)


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
