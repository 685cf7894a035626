"""The rule engine on a full year: 100 residents, 45 faculty, 730 blocks, ~87k assignments.

Budget (issue 7): validating the year takes under 0.5 s. Also measured: `validate(around=...)`
on one day of that year (what a manual assignment's warnings and a swap check cost) and
`warnings_for` (two such checks).

The year is synthetic and seeded: six rotations; every resident works both blocks of six
days in seven on one rotation for four weeks at a time, faculty supervise each staffed
rotation and block as `required_faculty` asks, and 300 random extra blocks are added. It is
not valid on purpose (12-hour blocks twice a day break 80 hours; the extras double-book and
overfill), so every rule has work to report, as in a real check.

Run: pytest tests/benchmark/test_scheduling_validation.py -m performance --benchmark-only --no-cov
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from tandem.scheduling.domain import (
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
from tandem.scheduling.rules import required_faculty, validate, warnings_for

SEED = 20270101
START = date(2027, 1, 4)
DAYS = 365  # 730 blocks
RESIDENTS = 100
FACULTY = 45
BUDGET_SECONDS = 0.5
# Rotation index per tenth of the residents: 3 clinic, 3 wards, 1 each ICU, procedures, night
# float, conference. About 36 faculty supervise a block.
SHARES = (0, 0, 0, 1, 1, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Year:
    problem: ScheduleProblem
    one_day: date
    extra: Assignment


def _year() -> Year:
    rng = random.Random(SEED)
    ids = iter(uuid.UUID(int=rng.getrandbits(128)) for _ in range(10**6))
    rotations = [
        Rotation(next(ids), "Clinic", RotationKind.CLINIC, 10, 30, True, 6.0),
        Rotation(next(ids), "Wards", RotationKind.INPATIENT, 15, 35, True, 6.0),
        Rotation(next(ids), "ICU", RotationKind.ICU, 4, 12, True, 12.0),
        Rotation(next(ids), "Procedures", RotationKind.PROCEDURES, 2, 10, True, 6.0),
        Rotation(next(ids), "Night float", RotationKind.INPATIENT, 2, 10, True, 12.0),
        Rotation(next(ids), "Conference", RotationKind.CONFERENCE, 0, 100, False, 2.0),
    ]
    residents = [
        Person(next(ids), PersonType.RESIDENT, pgy_level=1 + i % 3, name=f"Resident {i}")
        for i in range(RESIDENTS)
    ]
    faculty = [Person(next(ids), PersonType.FACULTY, name=f"Faculty {i}") for i in range(FACULTY)]
    blocks = {
        (START + timedelta(days=d), tod): Block(next(ids), START + timedelta(days=d), tod)
        for d in range(DAYS)
        for tod in (TimeOfDay.AM, TimeOfDay.PM)
    }
    assignments: list[Assignment] = []
    slots: dict[tuple[date, TimeOfDay, int], list[Person]] = {}
    for n, person in enumerate(residents):
        day_off = n % 7  # staggered, so every day has people on duty
        for d in range(DAYS):
            if d % 7 == day_off:
                continue
            # A new rotation every four weeks; clinic and wards take most residents.
            rotation = SHARES[(n + d // 28) % len(SHARES)]
            for tod in (TimeOfDay.AM, TimeOfDay.PM):
                day = START + timedelta(days=d)
                block = blocks[(day, tod)]
                assignments.append(
                    Assignment(person.id, block.id, rotations[rotation].id, AssignmentRole.PRIMARY)
                )
                slots.setdefault((day, tod, rotation), []).append(person)
    # Faculty supervise every slot, round-robin, as many as the rotation needs.
    turn = 0
    for (day, tod, rotation), people in sorted(slots.items(), key=lambda kv: kv[0][:2]):
        for _ in range(required_faculty(rotations[rotation], people)):
            assignments.append(
                Assignment(
                    faculty[turn % FACULTY].id,
                    blocks[(day, tod)].id,
                    rotations[rotation].id,
                    AssignmentRole.SUPERVISING,
                )
            )
            turn += 1
    # Some noise, so the rolling and per-block rules have work to report.
    for _ in range(300):
        person = rng.choice(residents)
        day = START + timedelta(days=rng.randrange(DAYS))
        tod = rng.choice((TimeOfDay.AM, TimeOfDay.PM))
        noisy = rng.choice(rotations)
        assignments.append(
            Assignment(person.id, blocks[(day, tod)].id, noisy.id, AssignmentRole.PRIMARY)
        )
    rng.shuffle(assignments)
    problem = ScheduleProblem(
        start_date=START,
        end_date=START + timedelta(days=DAYS - 1),
        people={p.id: p for p in residents + faculty},
        blocks={b.id: b for b in blocks.values()},
        rotations={r.id: r for r in rotations},
        assignments=tuple(assignments),
    )
    one_day = START + timedelta(days=200)
    extra = Assignment(
        residents[0].id,
        blocks[(one_day, TimeOfDay.PM)].id,
        rotations[0].id,
        AssignmentRole.PRIMARY,
    )
    return Year(problem, one_day, extra)


@pytest.fixture(scope="module")
def year() -> Year:
    return _year()


def _describe(benchmark: Any, year: Year) -> None:
    benchmark.extra_info["budget_seconds"] = BUDGET_SECONDS
    benchmark.extra_info["residents"] = RESIDENTS
    benchmark.extra_info["faculty"] = FACULTY
    benchmark.extra_info["blocks"] = len(year.problem.blocks)
    benchmark.extra_info["assignments"] = len(year.problem.assignments)


def test_validate_full_year(benchmark: Any, year: Year) -> None:
    report = benchmark.pedantic(validate, args=(year.problem,), rounds=7, iterations=1)
    _describe(benchmark, year)
    benchmark.extra_info["violations"] = report.total_violations
    benchmark.extra_info["coverage_rate"] = round(report.coverage_rate, 4)
    benchmark.extra_info["median_seconds"] = round(benchmark.stats.stats.median, 4)
    benchmark.extra_info["within_budget"] = benchmark.stats.stats.median < BUDGET_SECONDS
    assert report.total_violations > 0  # the noise is seen: the engine did the work


def test_validate_around_one_day(benchmark: Any, year: Year) -> None:
    around = (year.one_day, year.one_day)
    report = benchmark.pedantic(
        lambda: validate(year.problem, around=around), rounds=15, iterations=1
    )
    _describe(benchmark, year)
    benchmark.extra_info["violations"] = report.total_violations
    benchmark.extra_info["median_seconds"] = round(benchmark.stats.stats.median, 4)
    full = validate(year.problem)
    assert {v for v in report.violations if v.block_id is not None} <= set(full.violations)


def test_warnings_for_one_assignment(benchmark: Any, year: Year) -> None:
    warned = benchmark.pedantic(
        warnings_for, args=(year.problem, year.extra), rounds=15, iterations=1
    )
    _describe(benchmark, year)
    benchmark.extra_info["warnings"] = len(warned)
    benchmark.extra_info["median_seconds"] = round(benchmark.stats.stats.median, 4)
    assert all(v.person_id in (None, year.extra.person_id) for v in warned)
