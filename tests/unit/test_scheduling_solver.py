"""The CP-SAT schedule solver: every schedule it returns passes the rule engine; infeasible
inputs are reported, fast and in words, never as a partial schedule."""

import json
import threading
import time
from dataclasses import replace
from datetime import date, timedelta
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.scheduling.domain import (
    Absence,
    Assignment,
    AssignmentRole,
    Block,
    Person,
    PersonType,
    Rotation,
    RotationKind,
    ScheduleProblem,
    TimeOfDay,
)
from tandem.scheduling.rules import validate
from tandem.scheduling.solver import (
    Cancellation,
    SolveCancelled,
    SolveProgress,
    SolveResult,
    solve,
)
from tests.scheduling_instances import make_instance


def _with_result(problem: ScheduleProblem, result: SolveResult) -> ScheduleProblem:
    """The problem as the service would validate it: settled duty on either side kept, the
    period replaced."""
    settled = [
        a
        for a in problem.assignments
        if not problem.start_date <= problem.blocks[a.block_id].date <= problem.end_date
    ]
    return replace(problem, assignments=(*settled, *result.assignments))


def _assert_valid(problem: ScheduleProblem, result: SolveResult) -> None:
    assert result.status in ("optimal", "feasible"), result.explanation
    report = validate(_with_result(problem, result))
    assert report.valid, [v.message for v in report.violations[:5]]
    assert report.coverage_rate == 1.0


def _rotation(problem: ScheduleProblem, name: str) -> Rotation:
    return next(r for r in problem.rotations.values() if r.name == name)


# --------------------------------------------------------------------------- feasible


def test_small_instance_is_solved_optimally_and_validates() -> None:
    problem = make_instance(6, 3, 7, seed=1)
    result = solve(problem, timeout_seconds=5, workers=1)
    _assert_valid(problem, result)
    assert result.status == "optimal"
    assert result.gap == 0.0
    assert result.objective == result.bound
    assert result.explanation is None
    assert result.first_feasible_seconds is not None
    assert result.wall_seconds < 5


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    residents=st.integers(min_value=6, max_value=16),
    faculty=st.integers(min_value=3, max_value=6),
    days=st.integers(min_value=3, max_value=35),
    history=st.booleans(),
)
def test_a_schedule_the_solver_returns_always_validates(
    seed: int, residents: int, faculty: int, days: int, history: bool
) -> None:
    problem = make_instance(residents, faculty, days, seed=seed, history=history)
    result = solve(problem, timeout_seconds=10, seed=seed, workers=1)
    if result.status in ("optimal", "feasible"):
        _assert_valid(problem, result)
    else:
        # Never a silent partial schedule: no assignments, and a reason.
        assert result.assignments == ()
        assert result.explanation


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=10_000), days=st.integers(min_value=3, max_value=10))
def test_cp_sat_alone_returns_valid_schedules(seed: int, days: int) -> None:
    # Without the greedy start, so the model itself (not the hint) is what is checked.
    problem = make_instance(6, 3, days, seed=seed)
    result = solve(problem, timeout_seconds=10, seed=seed, workers=1, hint=False)
    _assert_valid(problem, result)
    assert result.chunks[0].variables > 0


def test_the_30_resident_target_is_valid_and_fast() -> None:
    problem = make_instance(30, 10, 28)
    result = solve(problem, timeout_seconds=5, workers=1)
    _assert_valid(problem, result)
    assert result.first_feasible_seconds is not None
    assert result.first_feasible_seconds < 2


def test_history_counts_for_the_rolling_windows() -> None:
    # Each resident worked 6 days in 7 before the start; several end the history on a 6-day
    # run, so they must be off on the first day, and the windows reach back 27 days.
    problem = make_instance(12, 5, 14, seed=3, history=True)
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    first_day = {
        a.person_id
        for a in result.assignments
        if problem.blocks[a.block_id].date == problem.start_date
    }
    history = [
        a for a in problem.assignments if problem.blocks[a.block_id].date < problem.start_date
    ]
    last_six = {problem.start_date - timedelta(days=i) for i in range(1, 7)}
    ran_six = {
        pid
        for pid in {a.person_id for a in history}
        if {problem.blocks[a.block_id].date for a in history if a.person_id == pid} >= last_six
    }
    assert ran_six  # the fixture does produce such runs
    assert not first_day & ran_six


def test_duty_settled_after_the_period_is_fixed() -> None:
    # X works 1-6 February in a schedule settled before this one (31 January alone): X on
    # 31 January would make 7 duty days in a row, so Z takes both of its blocks, although
    # fairness alone would split them.
    ward = Rotation(uuid4(), "Ward", RotationKind.INPATIENT, 1, 1, requires_supervision=False)
    x = Person(uuid4(), PersonType.RESIDENT, pgy_level=2, name="X")
    z = Person(uuid4(), PersonType.RESIDENT, pgy_level=2, name="Z")
    day = date(2027, 1, 31)
    blocks = [Block(uuid4(), day + timedelta(days=i), t) for i in range(7) for t in TimeOfDay]
    later = tuple(
        Assignment(x.id, b.id, ward.id, AssignmentRole.PRIMARY) for b in blocks if b.date > day
    )
    problem = ScheduleProblem(
        start_date=day,
        end_date=day,
        people={x.id: x, z.id: z},
        blocks={b.id: b for b in blocks},
        rotations={ward.id: ward},
        assignments=later,
    )
    for hint in (True, False):
        result = solve(problem, timeout_seconds=5, workers=1, hint=hint)
        _assert_valid(problem, result)
        assert {a.person_id for a in result.assignments} == {z.id}, hint


def test_duty_settled_after_the_period_can_make_it_infeasible() -> None:
    ward = Rotation(uuid4(), "Ward", RotationKind.INPATIENT, 1, 1, requires_supervision=False)
    x = Person(uuid4(), PersonType.RESIDENT, pgy_level=2, name="X")
    day = date(2027, 1, 31)
    blocks = [Block(uuid4(), day + timedelta(days=i), TimeOfDay.AM) for i in range(7)]
    problem = ScheduleProblem(
        start_date=day,
        end_date=day,
        people={x.id: x},
        blocks={b.id: b for b in blocks},
        rotations={ward.id: ward},
        assignments=tuple(
            Assignment(x.id, b.id, ward.id, AssignmentRole.PRIMARY) for b in blocks[1:]
        ),
    )
    result = solve(problem, timeout_seconds=5, workers=1)
    assert result.status == "infeasible"
    assert result.assignments == ()
    assert result.explanation is not None
    assert "Ward" in result.explanation


def test_a_year_is_solved_block_after_block() -> None:
    problem = make_instance(8, 4, 70, seed=5)
    seen: list[SolveProgress] = []
    result = solve(problem, timeout_seconds=20, workers=1, on_progress=seen.append)
    _assert_valid(problem, result)
    assert len(result.chunks) == 3  # 28 + 28 + 14 days
    done = [p for p in seen if p.done]
    assert [p.block_index for p in done] == [0, 1, 2]
    assert all(p.block_total == 3 for p in seen)
    dates = {problem.blocks[a.block_id].date for a in result.assignments}
    assert min(dates) == problem.start_date
    assert max(dates) == problem.end_date


def test_duty_fairness_holds_across_four_week_blocks() -> None:
    # Six 4-week blocks solved one after another, the work not dividing evenly among the
    # residents: each block's duty and weekend blocks are carried into the next, so the
    # same residents do not take the extra block every time.
    problem = make_instance(7, 4, 6 * 28, seed=3, absences=False)
    result = solve(problem, timeout_seconds=30, workers=1)
    _assert_valid(problem, result)
    assert len(result.chunks) == 6
    residents = [p.id for p in problem.people.values() if p.type is PersonType.RESIDENT]
    blocks = dict.fromkeys(residents, 0)
    weekends = dict.fromkeys(residents, 0)
    for a in result.assignments:
        if a.person_id in blocks:
            blocks[a.person_id] += 1
            weekends[a.person_id] += problem.blocks[a.block_id].date.weekday() >= 5
    assert max(blocks.values()) - min(blocks.values()) <= 2, blocks
    assert max(weekends.values()) - min(weekends.values()) <= 2, weekends


def test_a_resident_back_from_an_absence_is_not_made_to_catch_up() -> None:
    # Away for the whole second 4-week block: the carried counts credit the absence (raised
    # to the least of those present), so the third block does not load them with the blocks
    # they missed.
    base = make_instance(7, 4, 3 * 28, seed=3, absences=False)
    residents = sorted(p.id for p in base.people.values() if p.type is PersonType.RESIDENT)
    away = residents[0]
    second = base.start_date + timedelta(days=28)
    problem = replace(base, absences=(Absence(away, second, second + timedelta(days=27)),))
    result = solve(problem, timeout_seconds=30, workers=1)
    _assert_valid(problem, result)
    third = second + timedelta(days=28)
    blocks = dict.fromkeys(residents, 0)
    for a in result.assignments:
        if a.person_id in blocks and problem.blocks[a.block_id].date >= third:
            blocks[a.person_id] += 1
    others = [blocks[r] for r in residents[1:]]
    assert blocks[away] <= max(others), blocks


def test_assignments_already_in_the_period_are_ignored() -> None:
    problem = make_instance(6, 3, 7, seed=2)
    resident = next(p for p in problem.people.values() if p.type is PersonType.RESIDENT)
    block = next(b for b in problem.blocks.values() if b.date == problem.start_date)
    clinic = _rotation(problem, "Clinic")
    stale = Assignment(resident.id, block.id, clinic.id, AssignmentRole.PRIMARY)
    result = solve(replace(problem, assignments=(stale,)), timeout_seconds=5, workers=1)
    _assert_valid(problem, result)
    # Ignored: the same schedule as without it (it neither stays fixed nor counts as duty).
    assert result.assignments == solve(problem, timeout_seconds=5, workers=1).assignments


def test_faculty_are_named_present_and_once_per_block() -> None:
    problem = make_instance(18, 6, 14, seed=4)
    result = solve(problem, timeout_seconds=5, workers=1)
    _assert_valid(problem, result)
    supervising = [a for a in result.assignments if a.role is AssignmentRole.SUPERVISING]
    assert supervising
    assert all(problem.people[a.person_id].type is PersonType.FACULTY for a in supervising)
    per_faculty: dict[object, int] = {}
    for a in supervising:
        per_faculty[a.person_id] = per_faculty.get(a.person_id, 0) + 1
    # Spread fairly: the busiest does at most twice the least busy one's blocks, plus slack.
    counts = sorted(per_faculty.values())
    assert counts[-1] <= 2 * counts[0] + 4


def test_critical_care_by_specialty_is_one_to_one() -> None:
    problem = make_instance(12, 6, 7, seed=6)
    inpatient = _rotation(problem, "Inpatient")
    critical = replace(inpatient, specialty="Critical Care")
    problem = replace(problem, rotations={**problem.rotations, inpatient.id: critical})
    result = solve(problem, timeout_seconds=5, workers=1)
    _assert_valid(problem, result)


def test_long_shifts_are_held_to_80_hours() -> None:
    # 12-hour blocks: 24 duty days would be 576 h, so the 80-hour windows must bind.
    problem = make_instance(10, 5, 28, seed=7, absences=False)
    rotations = {
        rid: replace(r, hours_per_block=12.0) if r.min_residents > 0 else r
        for rid, r in problem.rotations.items()
    }
    problem = replace(problem, rotations=rotations)
    result = solve(problem, timeout_seconds=10, workers=1)
    if result.status == "infeasible":
        assert result.explanation
    else:
        _assert_valid(problem, result)


def test_the_same_seed_gives_the_same_schedule() -> None:
    problem = make_instance(8, 4, 7, seed=8)
    first = solve(problem, timeout_seconds=5, seed=3, workers=1)
    second = solve(problem, timeout_seconds=5, seed=3, workers=1)
    assert first.assignments == second.assignments


def test_statistics_are_json_ready() -> None:
    problem = make_instance(6, 3, 7)
    stats = solve(problem, timeout_seconds=5, workers=1).statistics()
    text = json.dumps(stats)
    assert '"status": "optimal"' in text
    assert stats["gap"] == 0.0
    assert isinstance(stats["blocks"], list)


# --------------------------------------------------------------------------- infeasible


def test_too_few_faculty_is_infeasible_within_a_second() -> None:
    problem = make_instance(30, 2, 28)
    t0 = time.perf_counter()
    result = solve(problem, timeout_seconds=5, workers=1)
    assert time.perf_counter() - t0 < 1
    assert result.status == "infeasible"
    assert result.assignments == ()
    assert result.explanation is not None
    assert "supervising faculty" in result.explanation
    assert "2027-01-04 AM" in result.explanation


def test_clustered_absences_are_infeasible_within_a_second() -> None:
    problem = make_instance(30, 10, 28, clustered_absences=18, cluster_days=10)
    t0 = time.perf_counter()
    result = solve(problem, timeout_seconds=5, workers=1)
    assert time.perf_counter() - t0 < 1
    assert result.status == "infeasible"
    assert result.explanation is not None
    assert "6 days in a row" in result.explanation
    assert "18 residents absent" in result.explanation


def test_everyone_away_names_the_rotation() -> None:
    problem = make_instance(6, 3, 14, absences=False, clustered_absences=6, cluster_days=1)
    result = solve(problem, timeout_seconds=5, workers=1)
    assert result.status == "infeasible"
    assert result.explanation is not None
    assert "needs" in result.explanation
    assert "(6 absent)" in result.explanation


def test_minimum_above_maximum_is_named() -> None:
    problem = make_instance(6, 3, 7)
    clinic = _rotation(problem, "Clinic")
    broken = replace(clinic, min_residents=3, max_residents=2)
    result = solve(
        replace(problem, rotations={**problem.rotations, clinic.id: broken}),
        timeout_seconds=5,
        workers=1,
    )
    assert result.status == "infeasible"
    assert result.explanation is not None
    assert "Clinic" in result.explanation


def _worked_before(problem: ScheduleProblem, days: int) -> ScheduleProblem:
    """Every resident on duty the `days` days before the start (Conference, AM)."""
    conference = _rotation(problem, "Conference")
    blocks = dict(problem.blocks)
    history = []
    residents = [p for p in problem.people.values() if p.type is PersonType.RESIDENT]
    for i in range(1, days + 1):
        block = Block(uuid4(), problem.start_date - timedelta(days=i), TimeOfDay.AM)
        blocks[block.id] = block
        history += [
            Assignment(r.id, block.id, conference.id, AssignmentRole.PRIMARY) for r in residents
        ]
    roomy = replace(conference, max_residents=len(residents))
    return replace(
        problem,
        blocks=blocks,
        assignments=tuple(history),
        rotations={**problem.rotations, conference.id: roomy},
    )


def test_residents_resting_after_the_history_are_counted_first() -> None:
    # 6 duty days in a row before the start: nobody may work on day one (a counting check).
    problem = _worked_before(make_instance(6, 3, 7, absences=False), 6)
    t0 = time.perf_counter()
    result = solve(problem, timeout_seconds=5, workers=1)
    assert time.perf_counter() - t0 < 1
    assert result.status == "infeasible"
    assert result.explanation is not None
    assert f"on {problem.start_date} AM" in result.explanation
    assert "6 resting after their duty" in result.explanation


def test_diagnosis_names_what_cp_sat_proves_impossible() -> None:
    # Inpatient needs 4 residents a block with the 1 faculty member ICU leaves: all 4 must be
    # PGY-2/3, and there are exactly 4, who cannot all work 7 days in a row. Each block alone
    # passes the counting checks; CP-SAT proves the week impossible and the diagnosis pass
    # (slack on minimums and faculty) names a shortfall.
    problem = make_instance(8, 2, 7, absences=False)
    people = dict(problem.people)
    pgy2 = [p for p in people.values() if p.pgy_level == 2]
    people[pgy2[0].id] = replace(pgy2[0], pgy_level=1)  # 4 PGY-2/3 left
    limits = {"ICU": (1, 1), "Inpatient": (4, 4), "Clinic": (0, 2), "Procedures": (0, 1)}
    rotations = {
        rid: replace(r, min_residents=limits[r.name][0], max_residents=limits[r.name][1])
        if r.name in limits
        else r
        for rid, r in problem.rotations.items()
    }
    problem = replace(problem, people=people, rotations=rotations)
    result = solve(problem, timeout_seconds=10, workers=1)
    assert result.status == "infeasible"
    assert result.assignments == ()
    assert result.explanation is not None
    assert result.chunks[0].status == "INFEASIBLE"  # proved by CP-SAT, not by a count
    assert "while the other requirements are met" in result.explanation


def test_a_run_before_the_period_limits_its_first_days() -> None:
    # 5 duty days in a row before the start: each resident may work day one or day two, not
    # both, but each day needs 4 of the 6 (a counting check over windows reaching back).
    problem = make_instance(6, 3, 7, absences=False)
    rotations = dict(problem.rotations)
    for name in ("Clinic", "Inpatient"):
        rotation = _rotation(problem, name)
        rotations[rotation.id] = replace(rotation, min_residents=2, max_residents=2)
    problem = _worked_before(replace(problem, rotations=rotations), 5)
    result = solve(problem, timeout_seconds=5, workers=1)
    assert result.status == "infeasible"
    assert result.explanation is not None
    assert "From 2027-01-04 to 2027-01-05" in result.explanation
    assert "counting the duty from 2026-12-30 before the schedule" in result.explanation


def test_a_history_over_the_limit_is_named() -> None:
    problem = make_instance(6, 3, 7, absences=False)
    conference = _rotation(problem, "Conference")
    resident = next(p for p in problem.people.values() if p.type is PersonType.RESIDENT)
    blocks = dict(problem.blocks)
    history = []
    for i in range(1, 28):
        block = Block(uuid4(), problem.start_date - timedelta(days=i), TimeOfDay.PM)
        blocks[block.id] = block
        history.append(Assignment(resident.id, block.id, conference.id, AssignmentRole.PRIMARY))
    result = solve(
        replace(problem, blocks=blocks, assignments=tuple(history)), timeout_seconds=5, workers=1
    )
    assert result.status == "infeasible"
    assert result.explanation is not None
    assert resident.name in result.explanation
    assert "before the schedule starts" in result.explanation


def test_no_time_is_a_timeout_not_a_partial_schedule() -> None:
    problem = make_instance(30, 10, 28)
    result = solve(problem, timeout_seconds=0.0, workers=1, hint=False)
    assert result.status == "timeout"
    assert result.assignments == ()
    assert result.explanation is not None
    assert "allow more time" in result.explanation


# --------------------------------------------------------------------------- instances


def test_instances_are_deterministic_and_realistic() -> None:
    a = make_instance(30, 10, 28, seed=11)
    b = make_instance(30, 10, 28, seed=11)
    assert a == b
    assert a != make_instance(30, 10, 28, seed=12)
    residents = [p for p in a.people.values() if p.type is PersonType.RESIDENT]
    assert {p.pgy_level for p in residents} == {1, 2, 3}
    assert len(a.blocks) == 56
    assert {r.kind for r in a.rotations.values()} == set(RotationKind)
    assert any(not r.requires_supervision for r in a.rotations.values())
    assert a.absences


def test_clustered_absences_share_their_dates() -> None:
    problem = make_instance(10, 4, 28, clustered_absences=5, cluster_days=3)
    clustered = [ab for ab in problem.absences if ab.end_date - ab.start_date == timedelta(days=2)]
    starts = {ab.start_date for ab in clustered}
    assert date(2027, 1, 11) in starts
    assert sum(1 for ab in clustered if ab.start_date == date(2027, 1, 11)) >= 5
    assert all(isinstance(ab, Absence) for ab in problem.absences)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        make_instance(0, 1, 7)


def test_days_with_fewer_blocks_are_scheduled() -> None:
    # No PM blocks at weekends: days differ in their number of blocks.
    problem = make_instance(12, 5, 21, seed=9)
    blocks = {
        bid: b
        for bid, b in problem.blocks.items()
        if not (b.date.weekday() >= 5 and b.time_of_day is TimeOfDay.PM)
    }
    problem = replace(problem, blocks=blocks)
    result = solve(problem, timeout_seconds=10, workers=1)
    _assert_valid(problem, result)
    assert {problem.blocks[a.block_id].time_of_day for a in result.assignments} == {
        TimeOfDay.AM,
        TimeOfDay.PM,
    }


def test_progress_reports_cp_sat_solutions() -> None:
    # CP-SAT alone: progress comes from its solution callback, then once per finished block.
    problem = make_instance(6, 3, 7, seed=10)
    seen: list[SolveProgress] = []
    result = solve(problem, timeout_seconds=10, workers=1, hint=False, on_progress=seen.append)
    _assert_valid(problem, result)
    assert seen[-1].done
    assert seen[-1].objective == result.objective
    assert all(p.block_total == 1 for p in seen)
    assert len(seen) >= 2


def test_cp_sat_improves_a_greedy_start_that_is_not_optimal() -> None:
    # Seeded so the greedy pass ends at objective 1: CP-SAT starts from it as a hint.
    problem = make_instance(20, 7, 28, seed=8)
    result = solve(problem, timeout_seconds=3, workers=1)
    _assert_valid(problem, result)
    assert result.chunks[0].status in ("OPTIMAL", "FEASIBLE")  # CP-SAT ran
    assert result.objective is not None
    assert result.objective <= 1


def test_out_of_time_keeps_the_greedy_schedule() -> None:
    # CP-SAT gets no time to report even the hint: the greedy schedule (valid by
    # construction) is returned as feasible, its gap against the trivial bound 0.
    problem = make_instance(20, 7, 28, seed=8)
    result = solve(problem, timeout_seconds=0.01, workers=1)
    _assert_valid(problem, result)
    assert result.status == "feasible"
    assert result.objective == 1
    assert result.bound == 0
    assert result.gap == 1.0


def test_a_cancelled_solve_stops_searching() -> None:
    """Cancelled from another thread mid-search (CP-SAT alone, 60 s allowed), the call raises
    instead of searching on to its deadline."""
    problem = make_instance(60, 20, 28, seed=1)
    cancellation = Cancellation()
    searching = threading.Event()
    outcome: list[SolveResult | Exception] = []

    def run() -> None:
        try:
            outcome.append(
                solve(
                    problem,
                    timeout_seconds=60,
                    hint=False,
                    on_progress=lambda _: searching.set(),
                    cancellation=cancellation,
                )
            )
        except SolveCancelled as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert searching.wait(timeout=60), "CP-SAT found no first solution"
    cancellation.cancel()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the search went on after the cancellation"
    assert len(outcome) == 1
    assert isinstance(outcome[0], SolveCancelled)


def test_a_solve_cancelled_before_it_starts_does_nothing() -> None:
    cancellation = Cancellation()
    cancellation.cancel()
    reports: list[SolveProgress] = []
    with pytest.raises(SolveCancelled, match="cancelled"):
        solve(make_instance(6, 3, 7), on_progress=reports.append, cancellation=cancellation)
    assert reports == []
