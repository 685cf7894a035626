"""The generation task's verdict: what a solver's answer, checked by the rule engine, means
for the schedule (saved or failed, why, and the figures recorded)."""

import math
from dataclasses import replace

import pytest

from tandem.scheduling.domain import AssignmentRole, ScheduleProblem
from tandem.scheduling.solver import SolveResult, SolveStatus, solve
from tandem.scheduling.tasks import SHOWN_VIOLATIONS, judge
from tests.scheduling_instances import make_instance


@pytest.fixture(scope="module")
def solved() -> tuple[ScheduleProblem, SolveResult]:
    problem = make_instance(6, 3, 7, seed=1)
    return problem, solve(problem, timeout_seconds=5, workers=1)


def _no_schedule(status: SolveStatus, explanation: str | None) -> SolveResult:
    return SolveResult(
        status=status,
        assignments=(),
        objective=None,
        bound=None,
        gap=math.inf,
        wall_seconds=1.0,
        build_seconds=0.5,
        first_feasible_seconds=None,
        explanation=explanation,
    )


def test_a_schedule_that_keeps_every_rule_is_kept(
    solved: tuple[ScheduleProblem, SolveResult],
) -> None:
    problem, result = solved
    verdict = judge(problem, result)
    assert verdict.valid
    assert verdict.error is None
    assert verdict.statistics["status"] == "optimal"
    assert verdict.statistics["validation_violations"] == 0
    assert verdict.statistics["coverage_rate"] == 1.0
    assert verdict.statistics["assignments"] == len(result.assignments)


def test_a_schedule_that_breaks_rules_is_refused_and_named(
    solved: tuple[ScheduleProblem, SolveResult],
) -> None:
    problem, result = solved
    # Without its supervising faculty every supervised block breaks the supervision rule.
    unsupervised = replace(
        result,
        assignments=tuple(a for a in result.assignments if a.role is AssignmentRole.PRIMARY),
    )
    verdict = judge(problem, unsupervised)
    assert not verdict.valid
    broken = verdict.statistics["validation_violations"]
    assert broken > SHOWN_VIOLATIONS
    assert verdict.error is not None
    assert verdict.error.startswith(
        f"The solver's schedule breaks {broken} rule(s), so it was not saved: "
    )
    assert verdict.error.endswith(f"; and {broken - SHOWN_VIOLATIONS} more")
    assert verdict.error.count("; ") == SHOWN_VIOLATIONS  # five shown, then the count


def test_a_few_broken_rules_are_all_named(solved: tuple[ScheduleProblem, SolveResult]) -> None:
    problem, result = solved
    first = result.assignments[0]
    # The same person twice in one block: one double booking.
    doubled = replace(result, assignments=(*result.assignments, replace(first)))
    verdict = judge(problem, doubled)
    assert not verdict.valid
    assert verdict.error is not None
    assert "more" not in verdict.error
    assert verdict.statistics["validation_violations"] >= 1


@pytest.mark.parametrize(
    ("status", "explanation", "error"),
    [
        pytest.param(
            "infeasible",
            "Too few faculty on 2027-01-04 AM",
            "Too few faculty on 2027-01-04 AM",
            id="infeasible-explained",
        ),
        pytest.param("timeout", None, "The solver ended timeout", id="timeout-unexplained"),
    ],
)
def test_no_schedule_fails_with_the_solvers_reason(
    solved: tuple[ScheduleProblem, SolveResult],
    status: SolveStatus,
    explanation: str | None,
    error: str,
) -> None:
    problem, _ = solved
    verdict = judge(problem, _no_schedule(status, explanation))
    assert not verdict.valid
    assert verdict.error == error
    assert "validation_violations" not in verdict.statistics
    assert verdict.statistics["gap"] is None  # not finite: stored as null
    assert verdict.statistics["status"] == status
