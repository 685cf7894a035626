"""The generator assigns call (issue 15): nightly in-house call coverage as a hard
requirement, every rule kept (Hypothesis), calls shared fairly across 4-week blocks and
carried over from earlier in the academic year, the post-call day free."""

from collections import Counter
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.scheduling.domain import (
    Absence,
    Call,
    CallCounts,
    CallPlan,
    Moonlighting,
    ScheduleProblem,
)
from tandem.scheduling.rules import validate
from tandem.scheduling.solver import SolveResult, solve
from tests.scheduling_instances import make_instance


def _checked(problem: ScheduleProblem, result: SolveResult) -> ScheduleProblem:
    """The problem as the service judges it: settled duty kept, the period replaced."""
    settled = [
        a
        for a in problem.assignments
        if not problem.start_date <= problem.blocks[a.block_id].date <= problem.end_date
    ]
    return replace(
        problem,
        assignments=(*settled, *result.assignments),
        calls=(*problem.calls, *result.calls),
    )


def _assert_valid(problem: ScheduleProblem, result: SolveResult) -> None:
    assert result.status in ("optimal", "feasible"), result.explanation
    report = validate(_checked(problem, result))
    assert report.valid, [v.message for v in report.violations[:5]]
    # The post-call day is free: no rest after call is short, not even the advisory one.
    assert not [v for v in report.violations if "after in-house call" in v.message]


def _nights(problem: ScheduleProblem) -> list[date]:
    days = (problem.end_date - problem.start_date).days + 1
    return [problem.start_date + timedelta(days=i) for i in range(days)]


def with_call(problem: ScheduleProblem, per_night: int = 1, **plan: object) -> ScheduleProblem:
    return replace(problem, call_plan=CallPlan(per_night=per_night, **plan))  # type: ignore[arg-type]


def test_every_night_has_its_call_and_the_schedule_validates() -> None:
    problem = with_call(make_instance(12, 4, 28, seed=3), per_night=2)
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    per_night = Counter(call.start.date() for call in result.calls)
    assert per_night == dict.fromkeys(_nights(problem), 2)
    assert all(call.start.hour == 19 and call.end - call.start == timedelta(hours=12)
               for call in result.calls)  # fmt: skip
    # Shared fairly: 56 calls among 12 residents, no one more than one above another
    # (the absent ones may have fewer).
    counts = Counter(call.person_id for call in result.calls)
    assert max(counts.values()) - min(counts.values()) <= 2


def test_no_block_on_the_day_after_a_call_nor_one_overlapping_it() -> None:
    problem = with_call(make_instance(10, 4, 14, seed=5), start_hour=7, hours=24)
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    worked = {(a.person_id, problem.blocks[a.block_id].date) for a in result.assignments}
    for call in result.calls:
        # 24-hour call from 07:00: it covers its own day's blocks, and the next day is free.
        assert (call.person_id, call.start.date()) not in worked
        assert (call.person_id, call.start.date() + timedelta(days=1)) not in worked


def test_calls_carried_over_from_earlier_in_the_year_even_out() -> None:
    base = make_instance(8, 4, 14, seed=7)
    residents = [p.id for p in base.people.values() if p.type.value == "resident"]
    # Four residents already had 3 calls this academic year, the others none.
    carried = {r: CallCounts(calls=3) for r in residents[:4]}
    problem = with_call(base, carried=carried)
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    counts = Counter(call.person_id for call in result.calls)
    away = {a.person_id for a in problem.absences}  # may take fewer calls
    totals = {r: counts[r] + (3 if r in carried else 0) for r in residents}
    present = [totals[r] for r in residents if r not in away]
    assert max(totals.values()) - min(present) <= 1, totals
    # The residents who had none take the period's calls first.
    assert min(counts[r] for r in residents[4:] if r not in away) >= max(
        counts[r] for r in residents[:4]
    )


def test_a_settled_call_before_the_period_is_respected() -> None:
    base = make_instance(8, 4, 10, seed=9)
    ada = next(p.id for p in base.people.values() if p.type.value == "resident")
    eve = base.start_date - timedelta(days=1)
    settled = Call(ada, datetime_at(eve, 19), datetime_at(base.start_date, 7))
    problem = with_call(replace(base, calls=(settled,)))
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    first_day = {a.person_id for a in result.assignments
                 if problem.blocks[a.block_id].date == base.start_date}  # fmt: skip
    assert ada not in first_day  # post-call
    assert all(c.person_id != ada or c.start.date() != base.start_date for c in result.calls)


def test_too_few_residents_for_call_is_explained_at_once() -> None:
    # Six residents cannot cover four calls a night with a night off after each.
    problem = with_call(make_instance(6, 3, 7, seed=1), per_night=4)
    result = solve(problem, timeout_seconds=5, workers=1)
    assert result.status == "infeasible"
    assert result.explanation is not None
    assert "needs at least 8 residents" in result.explanation


def test_nights_no_one_can_cover_are_named() -> None:
    # Enough residents in all, but not on every night (found by CP-SAT, then diagnosed).
    problem = with_call(make_instance(6, 3, 7, seed=1), per_night=3)
    result = solve(problem, timeout_seconds=5, workers=1)
    assert result.status == "infeasible"
    assert result.calls == ()
    assert result.explanation is not None
    assert result.explanation.startswith("Not enough residents can take in-house call on ")
    assert result.calls == ()
    assert result.assignments == ()
    assert result.explanation


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    residents=st.integers(min_value=8, max_value=14),
    days=st.integers(min_value=3, max_value=30),
    per_night=st.integers(min_value=1, max_value=2),
    start_hour=st.sampled_from([7, 17, 19, 21]),
    history=st.booleans(),
)
def test_a_generated_schedule_with_call_always_validates(
    seed: int, residents: int, days: int, per_night: int, start_hour: int, history: bool
) -> None:
    hours = {7: 24.0, 17: 14.0, 19: 12.0, 21: 10.0}[start_hour]
    base = make_instance(residents, 4, days, seed=seed, history=history)
    problem = with_call(base, per_night=per_night, start_hour=start_hour, hours=hours)
    result = solve(problem, timeout_seconds=10, seed=seed, workers=1)
    if result.status in ("optimal", "feasible"):
        _assert_valid(problem, result)
        assert len(result.calls) == per_night * days
    else:
        assert result.assignments == ()
        assert result.calls == ()
        assert result.explanation


def datetime_at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour))


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=10_000), days=st.integers(min_value=3, max_value=10))
def test_cp_sat_alone_assigns_valid_call(seed: int, days: int) -> None:
    # Without the greedy start: the model's call constraints themselves are what is checked.
    problem = with_call(make_instance(8, 3, days, seed=seed), start_hour=17, hours=14)
    result = solve(problem, timeout_seconds=10, seed=seed, workers=1, hint=False)
    _assert_valid(problem, result)
    assert len(result.calls) == days


def test_holiday_calls_go_to_those_who_had_fewer_this_year() -> None:
    base = make_instance(8, 4, 14, seed=11, absences=False)
    residents = sorted(
        (p for p in base.people.values() if p.type.value == "resident"), key=lambda p: p.name
    )
    holidays = frozenset(base.start_date + timedelta(days=d) for d in (1, 5, 9, 12))
    # Half of them already worked a holiday call this academic year.
    carried = {r.id: CallCounts(calls=1, holidays=1) for r in residents[:4]}
    plan = CallPlan(per_night=1, holidays=holidays, carried=carried)
    problem = replace(base, call_plan=plan)
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    on_holidays = {c.person_id for c in result.calls if c.start.date() in holidays}
    assert on_holidays <= {r.id for r in residents[4:]}
    assert len(on_holidays) == 4  # one each: spread over the year at most 1


def test_call_fairness_holds_across_four_week_blocks() -> None:
    # Three 4-week blocks solved one after another: each block's calls are carried into the
    # next, so the counts even out over the whole period, not only within each block.
    problem = with_call(make_instance(10, 4, 3 * 28, seed=2, absences=False))
    result = solve(problem, timeout_seconds=15, workers=1)
    _assert_valid(problem, result)
    assert len(result.chunks) == 3
    calls = Counter(call.person_id for call in result.calls)
    weekends = Counter(call.person_id for call in result.calls if call.start.weekday() >= 5)
    residents = [p.id for p in problem.people.values() if p.type.value == "resident"]
    assert max(calls[r] for r in residents) - min(calls[r] for r in residents) <= 1
    assert max(weekends[r] for r in residents) - min(weekends[r] for r in residents) <= 1


def test_no_call_the_night_before_a_no_call_before_rotation() -> None:
    base = make_instance(10, 4, 21, seed=4)
    clinic = next(r for r in base.rotations.values() if r.name == "Clinic")
    rotations = dict(base.rotations) | {clinic.id: replace(clinic, no_call_before=True)}
    problem = with_call(replace(base, rotations=rotations))
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    clinic_days = {
        (a.person_id, problem.blocks[a.block_id].date)
        for a in result.assignments
        if a.rotation_id == clinic.id
    }
    assert clinic_days  # the clinic is staffed, just never post-call
    for call in result.calls:
        assert (call.person_id, call.start.date() + timedelta(days=1)) not in clinic_days


def test_no_call_on_the_last_night_before_an_absence_that_starts_after_the_period() -> None:
    base = make_instance(8, 4, 14, seed=11, absences=False)
    residents = sorted(p.id for p in base.people.values() if p.type.value == "resident")
    # All but two residents are away from the day after the period: the last night's call
    # (ending that morning) can only go to those two.
    after = base.end_date + timedelta(days=1)
    away = tuple(Absence(r, after, after + timedelta(days=6)) for r in residents[2:])
    problem = with_call(replace(base, absences=away))
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    [last] = [call for call in result.calls if call.start.date() == base.end_date]
    assert last.person_id in residents[:2]


def test_no_call_before_is_implied_by_the_free_post_call_day() -> None:
    # The generator keeps every post-call day free of blocks, so the flag cannot change what
    # it produces: the same schedule with and without it (docs/decisions.md).
    base = with_call(make_instance(10, 4, 21, seed=4))
    clinic = next(r for r in base.rotations.values() if r.name == "Clinic")
    flagged = replace(
        base, rotations=dict(base.rotations) | {clinic.id: replace(clinic, no_call_before=True)}
    )
    plain = solve(base, timeout_seconds=10, workers=1)
    with_flag = solve(flagged, timeout_seconds=10, workers=1)
    assert with_flag.assignments == plain.assignments
    assert with_flag.calls == plain.calls
    worked = {(a.person_id, base.blocks[a.block_id].date) for a in plain.assignments}
    after_call = {(c.person_id, c.start.date() + timedelta(days=1)) for c in plain.calls}
    assert not after_call & worked


def test_moonlighting_is_fixed_duty_for_the_generator() -> None:
    base = make_instance(8, 4, 14, seed=13, absences=False)
    residents = sorted(
        (p for p in base.people.values() if p.type.value == "resident"), key=lambda p: p.name
    )
    busy = residents[0].id
    # 75 hours a week outside the schedule for the 4 weeks to the period's second week's
    # end: 20 hours of duty fit in those 28 days.
    moonlighting = tuple(
        Moonlighting(busy, base.start_date + timedelta(days=7 * w), 75.0) for w in (-2, -1, 0, 1)
    )
    problem = with_call(replace(base, moonlighting=moonlighting))
    result = solve(problem, timeout_seconds=3, workers=1)
    _assert_valid(problem, result)

    def hours(person_id: UUID) -> float:
        blocks = sum(
            problem.rotations[a.rotation_id].hours_per_block
            for a in result.assignments
            if a.person_id == person_id
        )
        return blocks + sum(12 for c in result.calls if c.person_id == person_id)

    # Valid (above: the 80 hours hold with the moonlighting), so the busy one works less.
    assert hours(busy) < min(hours(r.id) for r in residents[1:])
