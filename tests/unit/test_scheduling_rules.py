"""The ACGME rule engine (`tandem.scheduling.rules`): the seeds' tables, every rule at its
boundary, `around`, `warnings_for`, and Hypothesis properties of the whole engine."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import replace
from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.scheduling.domain import (
    Absence,
    Assignment,
    AssignmentRole,
    Block,
    Call,
    CallKind,
    Moonlighting,
    Person,
    PersonType,
    Rotation,
    RotationKind,
    RuleName,
    ScheduleProblem,
    Severity,
    TimeOfDay,
    Violation,
)
from tandem.scheduling.rules import (
    ADVISORY,
    RULES,
    ValidationReport,
    calculate_supervision_ratio,
    is_critical_care,
    required_faculty,
    validate,
    validate_weekly_hours,
    warnings_for,
)

START = date(2027, 1, 4)
AM, PM = TimeOfDay.AM, TimeOfDay.PM
PRIMARY, SUPERVISING = AssignmentRole.PRIMARY, AssignmentRole.SUPERVISING


class World:
    """A small schedule built by hand: people, rotations, blocks on demand, assignments."""

    def __init__(self, start: date = START, days: int = 28) -> None:
        self.start, self.end = start, start + timedelta(days=days - 1)
        self._ids = itertools.count(1)
        self.people: dict[uuid.UUID, Person] = {}
        self.rotations: dict[uuid.UUID, Rotation] = {}
        self.blocks: dict[uuid.UUID, Block] = {}
        self._slots: dict[tuple[date, TimeOfDay], Block] = {}
        self.assignments: list[Assignment] = []
        self.absences: list[Absence] = []
        self.calls: list[Call] = []
        self.moonlighting: list[Moonlighting] = []

    def _id(self) -> uuid.UUID:
        return uuid.UUID(int=next(self._ids))

    def resident(self, pgy: int = 1, name: str = "") -> Person:
        person = Person(self._id(), PersonType.RESIDENT, pgy_level=pgy, name=name)
        self.people[person.id] = person
        return person

    def faculty(self, name: str = "") -> Person:
        person = Person(self._id(), PersonType.FACULTY, name=name)
        self.people[person.id] = person
        return person

    def rotation(self, name: str = "Clinic", **fields: object) -> Rotation:
        values: dict[str, object] = {
            "kind": RotationKind.CLINIC,
            "min_residents": 0,
            "max_residents": 99,
            "requires_supervision": False,
        }
        values.update(fields)
        rotation = Rotation(self._id(), name, **values)  # type: ignore[arg-type]
        self.rotations[rotation.id] = rotation
        return rotation

    def block(self, day: date, tod: TimeOfDay = AM) -> Block:
        if (day, tod) not in self._slots:
            block = Block(self._id(), day, tod)
            self._slots[(day, tod)] = block
            self.blocks[block.id] = block
        return self._slots[(day, tod)]

    def period_blocks(self) -> None:
        day = self.start
        while day <= self.end:
            self.block(day, AM)
            self.block(day, PM)
            day += timedelta(days=1)

    def assign(
        self,
        person: Person,
        day: date,
        rotation: Rotation,
        tod: TimeOfDay = AM,
        role: AssignmentRole = PRIMARY,
    ) -> Assignment:
        assignment = Assignment(person.id, self.block(day, tod).id, rotation.id, role)
        self.assignments.append(assignment)
        return assignment

    def call(
        self,
        person: Person,
        start: datetime,
        hours: float,
        kind: CallKind = CallKind.IN_HOUSE,
        worked: float | None = None,
    ) -> Call:
        call = Call(person.id, start, start + timedelta(hours=hours), kind, worked)
        self.calls.append(call)
        return call

    def absent(self, person: Person, first: date, last: date) -> None:
        self.absences.append(Absence(person.id, first, last))

    def problem(self) -> ScheduleProblem:
        return ScheduleProblem(
            start_date=self.start,
            end_date=self.end,
            people=dict(self.people),
            blocks=dict(self.blocks),
            rotations=dict(self.rotations),
            assignments=tuple(self.assignments),
            absences=tuple(self.absences),
            calls=tuple(self.calls),
            moonlighting=tuple(self.moonlighting),
        )


def of_rule(report: ValidationReport, rule: RuleName) -> list[Violation]:
    return [v for v in report.violations if v.rule is rule]


def days_from(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]


# --------------------------------------------------------------------------- seeds' tables


@pytest.mark.parametrize(
    ("hours", "valid"),
    [
        pytest.param(40, True, id="typical-week"),
        pytest.param(80, True, id="at-limit"),
        pytest.param(81, False, id="over-limit"),
        pytest.param(0, True, id="no-duty"),
        pytest.param(-1, False, id="negative"),
    ],
)
def test_weekly_hours_table(hours: float, valid: bool) -> None:
    check = validate_weekly_hours(hours)
    assert check.is_valid is valid
    assert str(hours) in check.message


@pytest.mark.parametrize(
    "hours",
    [pytest.param(80.5, id="half-hour-over"), pytest.param(float("nan"), id="nan")],
)
def test_weekly_hours_refuses_fractional_excess_and_nan(hours: float) -> None:
    assert validate_weekly_hours(hours).is_valid is False


@pytest.mark.parametrize(
    ("pgy", "specialty", "ratio"),
    [
        pytest.param(1, "Internal Medicine", 2, id="pgy1-im"),
        pytest.param(2, "Internal Medicine", 4, id="pgy2-im"),
        pytest.param(3, "Surgery", 4, id="pgy3-surgery"),
        pytest.param(1, "Critical Care", 1, id="pgy1-critical-care"),
    ],
)
def test_supervision_ratio_table(pgy: int, specialty: str, ratio: int) -> None:
    assert calculate_supervision_ratio(pgy, specialty) == ratio


@pytest.mark.parametrize(
    ("pgy", "specialty", "kind"),
    [
        pytest.param(3, "critical care", None, id="lower-case"),
        pytest.param(2, "ICU", None, id="icu-specialty"),
        pytest.param(3, " Critical-Care ", None, id="hyphen-and-spaces"),
        pytest.param(3, None, RotationKind.ICU, id="icu-kind"),
        pytest.param(2, "Surgery", RotationKind.ICU, id="icu-kind-wins-over-specialty"),
    ],
)
def test_critical_care_is_one_to_one_whatever_the_level(
    pgy: int, specialty: str | None, kind: RotationKind | None
) -> None:
    assert calculate_supervision_ratio(pgy, specialty, kind) == 1


@pytest.mark.parametrize(
    "pgy",
    [
        pytest.param(0, id="zero"),
        pytest.param(4, id="four"),
        pytest.param(-1, id="negative"),
        pytest.param(True, id="bool"),
    ],
)
def test_supervision_ratio_refuses_unknown_levels(pgy: int) -> None:
    with pytest.raises(ValueError, match="pgy_level"):
        calculate_supervision_ratio(pgy, "Critical Care")


# --------------------------------------------------------------------------- required_faculty


@pytest.mark.parametrize(
    ("levels", "kind", "needed"),
    [
        pytest.param([], RotationKind.CLINIC, 0, id="nobody"),
        pytest.param([1], RotationKind.CLINIC, 1, id="one-pgy1"),
        pytest.param([1, 1], RotationKind.CLINIC, 1, id="two-pgy1"),
        pytest.param([1, 1, 1], RotationKind.CLINIC, 2, id="three-pgy1"),
        pytest.param([2, 3, 2, 3], RotationKind.CLINIC, 1, id="four-senior"),
        pytest.param([2, 3, 2, 3, 2], RotationKind.CLINIC, 2, id="five-senior"),
        pytest.param([1, 2, 3], RotationKind.CLINIC, 1, id="half-plus-two-quarters"),
        pytest.param([1, 1, 1, 2], RotationKind.CLINIC, 2, id="one-and-three-quarters"),
        pytest.param([1, 2, 2, 2], RotationKind.CLINIC, 2, id="one-and-a-quarter"),
        pytest.param([1, 2, 3], RotationKind.ICU, 3, id="icu-one-each"),
    ],
)
def test_required_faculty_mixed_levels(levels: list[int], kind: RotationKind, needed: int) -> None:
    world = World()
    rotation = world.rotation("Ward", kind=kind, requires_supervision=True)
    assert required_faculty(rotation, [world.resident(p) for p in levels]) == needed


def test_required_faculty_is_zero_without_supervision_and_skips_faculty() -> None:
    world = World()
    free = world.rotation("Conference", requires_supervision=False)
    ward = world.rotation("Ward", requires_supervision=True)
    residents = [world.resident(1), world.resident(1), world.resident(1)]
    assert required_faculty(free, residents) == 0
    assert required_faculty(ward, [*residents[:2], world.faculty()]) == 1


def test_rotation_specialty_makes_a_rotation_critical_care() -> None:
    world = World()
    unit = world.rotation("Unit", kind=RotationKind.INPATIENT, specialty="Critical Care")
    ward = world.rotation("Ward", kind=RotationKind.INPATIENT, specialty="Medicine")
    assert is_critical_care(unit)
    assert not is_critical_care(ward)
    needs = replace(unit, requires_supervision=True)
    assert required_faculty(needs, [world.resident(3), world.resident(2)]) == 2


@given(
    pgy1=st.integers(min_value=0, max_value=12),
    senior=st.integers(min_value=0, max_value=12),
    icu=st.booleans(),
)
def test_required_faculty_matches_the_solvers_linear_constraint(
    pgy1: int, senior: int, icu: bool
) -> None:
    """The solver encodes `4*f >= 2*pgy1 + pgy23` (icu: `f >= residents`); the least such f."""
    world = World()
    kind = RotationKind.ICU if icu else RotationKind.INPATIENT
    rotation = world.rotation("Ward", kind=kind, requires_supervision=True)
    residents = [world.resident(1) for _ in range(pgy1)]
    residents += [world.resident(2 + i % 2) for i in range(senior)]
    least = next(
        f for f in itertools.count() if (f >= pgy1 + senior if icu else 4 * f >= 2 * pgy1 + senior)
    )
    assert required_faculty(rotation, residents) == least


# --------------------------------------------------------------------------- the rule list


def test_rules_have_the_agreed_names_and_severities() -> None:
    assert {r.name: r.severity for r in RULES} == {
        RuleName.EIGHTY_HOUR: Severity.CRITICAL,
        RuleName.ONE_IN_SEVEN: Severity.HIGH,
        RuleName.SUPERVISION: Severity.CRITICAL,
        RuleName.DOUBLE_BOOKING: Severity.CRITICAL,
        RuleName.ABSENCE: Severity.HIGH,
        RuleName.COVERAGE: Severity.MEDIUM,
        RuleName.CONTINUOUS_DUTY: Severity.CRITICAL,
        RuleName.REST_AFTER_CALL: Severity.HIGH,
        RuleName.REST_BETWEEN_SHIFTS: Severity.LOW,
        RuleName.CALL_FREQUENCY: Severity.HIGH,
        RuleName.EIGHTY_HOUR_APPROACHING: Severity.LOW,
    }


def test_empty_schedule_is_valid() -> None:
    world = World()
    world.rotation("Clinic", min_residents=0)
    world.period_blocks()
    report = validate(world.problem())
    assert report == ValidationReport(valid=True, violations=(), coverage_rate=1.0)
    assert report.total_violations == 0


# --------------------------------------------------------------------------- 80_hour


def _hours_world(blocks: int, first: date = START) -> tuple[World, Person, Rotation]:
    """`blocks` 10-hour blocks for one resident, AM and PM from `first`, a day off every 7th
    day (so 1_in_7 stays quiet and only the hours matter)."""
    world = World()
    resident = world.resident(2, name="Dr Ames")
    ward = world.rotation("Ward", kind=RotationKind.INPATIENT, hours_per_block=10.0)
    day, placed = first, 0
    while placed < blocks:
        if (day - first).days % 7 != 6:
            for tod in (AM, PM):
                if placed < blocks:
                    world.assign(resident, day, ward, tod)
                    placed += 1
        day += timedelta(days=1)
    return world, resident, ward


def test_exactly_320_hours_in_a_window_passes() -> None:
    world, _, _ = _hours_world(32)  # 32 x 10 h within 19 days
    assert of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR) == []


def test_one_block_over_320_hours_fails_with_the_worst_window() -> None:
    world, resident, _ = _hours_world(33)
    report = validate(world.problem())
    [violation] = of_rule(report, RuleName.EIGHTY_HOUR)
    assert violation.severity is Severity.CRITICAL
    assert violation.person_id == resident.id
    assert violation.block_id is None
    assert "82.5 duty hours a week averaged over the 28 days from" in violation.message
    assert "(limit 80)" in violation.message
    assert "Dr Ames" in violation.message
    assert not report.valid


def test_message_names_the_worst_window_and_its_weekly_average() -> None:
    # 28 x 12 h + 10 h = 346 h inside the 28 days from START (86.5 a week); every other
    # window holds less, so START's window is the worst.
    world = World()
    resident = world.resident(1, name="Dr Ames")
    ward = world.rotation("Ward", hours_per_block=12.0)
    clinic = world.rotation("Clinic", hours_per_block=10.0)
    for day in days_from(START, 28):
        world.assign(resident, day, ward, AM)
    world.assign(resident, START + timedelta(days=9), clinic, PM)
    [violation] = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR)
    # Windows from START-2 to START+2 are over too (336 h + 10 h minus at most 24 h).
    assert violation.message == (
        f"Dr Ames: 86.5 duty hours a week averaged over the 28 days from {START} (limit 80): "
        f"346 hours to {START + timedelta(days=27)}, 26 more than the 320 allowed; the 5 "
        f"windows starting {START - timedelta(days=2)} through {START + timedelta(days=2)} "
        f"are all over: take at least 26 hours of duty off between {START} and "
        f"{START + timedelta(days=27)}"
    )


def test_a_single_window_over_80_hours_says_how_many_hours_to_take_off() -> None:
    # 32 blocks of 10 h from START, then one more exactly 27 days after START: only the
    # window from START holds all 330 hours.
    world, resident, ward = _hours_world(32)
    world.assign(resident, START + timedelta(days=27), ward, AM)
    [violation] = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR)
    assert violation.message == (
        f"Dr Ames: 82.5 duty hours a week averaged over the 28 days from {START} (limit 80): "
        f"330 hours to {START + timedelta(days=27)}, 10 more than the 320 allowed: take at "
        f"least 10 hours of duty off between {START} and {START + timedelta(days=27)}"
    )


def test_history_before_the_start_counts() -> None:
    # 320 h in the 27 days before the start: legal on its own, one more block breaks it.
    world, resident, ward = _hours_world(32, first=START - timedelta(days=27))
    assert of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR) == []
    world.assign(resident, START, ward, PM)
    [violation] = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR)
    assert f"from {START - timedelta(days=27)}" in violation.message


def test_assignments_long_before_the_start_are_ignored() -> None:
    # 28 days of history ending 28 days before the start touch no window of the period.
    world, _, _ = _hours_world(60, first=START - timedelta(days=56))
    assert of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR) == []


def test_one_violation_per_run_of_violating_windows() -> None:
    world = World(days=120)
    resident = world.resident(1)
    ward = world.rotation("Ward", hours_per_block=12.0)
    # Two separate heavy stretches 60 days apart: two runs, two violations.
    for first in (START, START + timedelta(days=70)):
        for day in days_from(first, 28):
            if (day - first).days % 7 != 6:
                world.assign(resident, day, ward, AM)
                world.assign(resident, day, ward, PM)
    violations = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR)
    assert len(violations) == 2
    assert all(v.person_id == resident.id for v in violations)
    assert "windows starting" in violations[0].message


def test_faculty_hours_are_not_limited() -> None:
    world = World()
    faculty = world.faculty()
    ward = world.rotation("Ward", hours_per_block=24.0)
    for day in days_from(START, 28):
        world.assign(faculty, day, ward, AM, SUPERVISING)
        world.assign(faculty, day, ward, PM, SUPERVISING)
    assert validate(world.problem()).valid


# --------------------------------------------------------------------------- 1_in_7


def _duty_days(world: World, person: Person, days: list[date]) -> None:
    clinic = next(iter(world.rotations.values()), None) or world.rotation("Clinic")
    for day in days:
        world.assign(person, day, clinic)


def test_six_duty_days_in_a_row_pass_seven_fail() -> None:
    world = World()
    resident = world.resident(1, name="Dr Bell")
    _duty_days(world, resident, days_from(START + timedelta(days=3), 6))
    assert validate(world.problem()).valid
    _duty_days(world, resident, [START + timedelta(days=9)])
    [violation] = of_rule(validate(world.problem()), RuleName.ONE_IN_SEVEN)
    assert violation.severity is Severity.HIGH
    assert violation.person_id == resident.id
    assert f"7 duty days in a row from {START + timedelta(days=3)}" in violation.message
    assert f"a day off is needed by {START + timedelta(days=9)}" in violation.message


def test_am_or_pm_alone_makes_a_duty_day() -> None:
    world = World()
    resident = world.resident(1)
    clinic = world.rotation("Clinic")
    for i, day in enumerate(days_from(START, 7)):
        world.assign(resident, day, clinic, AM if i % 2 else PM)
    assert len(of_rule(validate(world.problem()), RuleName.ONE_IN_SEVEN)) == 1


def test_a_run_may_start_before_the_period() -> None:
    world = World()
    resident = world.resident(1)
    _duty_days(world, resident, days_from(START - timedelta(days=3), 7))
    [violation] = of_rule(validate(world.problem()), RuleName.ONE_IN_SEVEN)
    assert f"from {START - timedelta(days=3)}" in violation.message


def test_a_run_entirely_in_the_history_is_not_this_schedules_violation() -> None:
    world = World()
    resident = world.resident(1)
    _duty_days(world, resident, days_from(START - timedelta(days=9), 8))
    assert validate(world.problem()).valid


def test_four_free_days_in_28_pass_three_fail() -> None:
    world = World()
    resident = world.resident(1)
    # Six on, one off, four times: exactly 4 free days in the 28 from START.
    on = [d for d in days_from(START, 28) if (d - START).days % 7 != 6]
    _duty_days(world, resident, on)
    assert validate(world.problem()).valid
    _duty_days(world, resident, [START + timedelta(days=13)])
    messages = [v.message for v in of_rule(validate(world.problem()), RuleName.ONE_IN_SEVEN)]
    # The windows from START-1 and START both hold 25 duty days; the earliest is named.
    # (Three free days in 28 always mean a 7-day run too: 25 duty days in at most 4 runs.)
    assert len(messages) == 2
    assert (
        f"only 3 days free of duty in the 28 days from {START - timedelta(days=1)} to "
        f"{START + timedelta(days=26)} (at least 4 needed): free 1 more day"
    ) in messages[0]
    assert "13 duty days in a row" in messages[1]


def test_free_days_count_history_and_fire_on_their_own() -> None:
    # 25 duty days in a row ending 3 days before the start: the run lies wholly in the
    # history (not this schedule's run), but the window from START-27 holds START and only
    # 3 free days, so the window rule reports it.
    world = World()
    resident = world.resident(1)
    _duty_days(world, resident, days_from(START - timedelta(days=27), 25))
    [violation] = of_rule(validate(world.problem()), RuleName.ONE_IN_SEVEN)
    assert "only 3 days free of duty" in violation.message


def test_faculty_have_no_days_off_rule() -> None:
    world = World()
    faculty = world.faculty()
    clinic = world.rotation("Clinic")
    for day in days_from(START, 28):
        world.assign(faculty, day, clinic, AM, SUPERVISING)
    assert validate(world.problem()).valid


# --------------------------------------------------------------------------- supervision


def test_supervision_boundary_for_pgy1() -> None:
    world = World()
    ward = world.rotation("Ward", requires_supervision=True)
    boss = world.faculty()
    for _ in range(2):
        world.assign(world.resident(1), START, ward)
    world.assign(boss, START, ward, role=SUPERVISING)
    assert validate(world.problem()).valid
    world.assign(world.resident(1), START, ward)
    [violation] = of_rule(validate(world.problem()), RuleName.SUPERVISION)
    assert violation.severity is Severity.CRITICAL
    assert violation.person_id is None
    assert violation.block_id == world.block(START).id
    assert "3 residents (3 PGY-1) need 2 supervising faculty, 1 assigned" in violation.message


def test_supervision_icu_is_one_to_one() -> None:
    world = World()
    icu = world.rotation("ICU", kind=RotationKind.ICU, requires_supervision=True)
    world.assign(world.resident(3), START, icu)
    world.assign(world.resident(2), START, icu)
    world.assign(world.faculty(), START, icu, role=SUPERVISING)
    [violation] = of_rule(validate(world.problem()), RuleName.SUPERVISION)
    assert "need 2 supervising faculty, 1 assigned" in violation.message


def test_supervision_counts_only_faculty_supervising_that_rotation() -> None:
    world = World()
    ward = world.rotation("Ward", requires_supervision=True)
    clinic = world.rotation("Clinic")
    world.assign(world.resident(1), START, ward)
    world.assign(world.resident(3), START, ward, role=SUPERVISING)  # not faculty: ignored
    world.assign(world.faculty(), START, clinic, role=SUPERVISING)  # another rotation
    world.assign(world.faculty(), START, ward, PM, SUPERVISING)  # another block
    [violation] = of_rule(validate(world.problem()), RuleName.SUPERVISION)
    assert "0 assigned" in violation.message


def test_no_supervision_needed_when_the_rotation_does_not_require_it() -> None:
    world = World()
    conference = world.rotation("Conference", requires_supervision=False)
    for _ in range(5):
        world.assign(world.resident(1), START, conference)
    assert validate(world.problem()).valid


def test_one_person_counts_once_per_rotation_and_role() -> None:
    world = World()
    ward = world.rotation("Ward", requires_supervision=True, max_residents=1)
    resident, boss = world.resident(1), world.faculty()
    world.assign(resident, START, ward)
    world.assign(resident, START, ward)  # the same resident twice: still one resident
    world.assign(boss, START, ward, role=SUPERVISING)
    world.assign(boss, START, ward, role=SUPERVISING)  # the same faculty twice: still one
    rules = [v.rule for v in validate(world.problem()).violations]
    assert rules == [RuleName.DOUBLE_BOOKING, RuleName.DOUBLE_BOOKING]
    other = World()
    ward = other.rotation("Ward", requires_supervision=True)
    resident = other.resident(2)
    other.assign(resident, START, ward, role=SUPERVISING)  # a role mismatch, ignored ...
    other.assign(resident, START, ward)  # ... so this primary still counts
    supervision = of_rule(validate(other.problem()), RuleName.SUPERVISION)
    assert [v.message for v in supervision] == [
        f"Ward on {START} AM: 1 resident (1 PGY-2) need 1 supervising faculty, 0 assigned: "
        f"needs 1 more supervising faculty on {START} AM for Ward, or fewer residents there"
    ]


def test_a_supervision_shortfall_names_how_many_more_faculty() -> None:
    # 5 PGY-1 residents need 3 faculty (2 each); 1 is there: 2 more.
    world = World()
    ward = world.rotation("Ward", requires_supervision=True)
    for _ in range(5):
        world.assign(world.resident(1), START, ward, PM)
    world.assign(world.faculty(), START, ward, PM, SUPERVISING)
    [violation] = of_rule(validate(world.problem()), RuleName.SUPERVISION)
    assert violation.message == (
        f"Ward on {START} PM: 5 residents (5 PGY-1) need 3 supervising faculty, 1 assigned: "
        f"needs 2 more supervising faculty on {START} PM for Ward, or fewer residents there"
    )


@pytest.mark.parametrize("kind", [RotationKind.CLINIC, RotationKind.ICU])
def test_a_resident_without_a_level_cannot_be_supervised(kind: RotationKind) -> None:
    world = World()
    ward = world.rotation("Ward", kind=kind, requires_supervision=True)
    nameless = Person(uuid.uuid4(), PersonType.RESIDENT, pgy_level=None)
    world.people[nameless.id] = nameless
    world.assign(nameless, START, ward)
    with pytest.raises(ValueError, match="pgy_level"):
        required_faculty(ward, [nameless])
    with pytest.raises(ValueError, match="pgy_level"):
        validate(world.problem())
    # Where nobody supervises, the level does not matter.
    free = replace(world.problem(), rotations={ward.id: replace(ward, requires_supervision=False)})
    assert validate(free).valid


# --------------------------------------------------------------------------- double_booking


def test_double_booking_per_person_per_block() -> None:
    world = World()
    resident, faculty = world.resident(2, name="Dr Cole"), world.faculty(name="Dr Dane")
    clinic, ward = world.rotation("Clinic"), world.rotation("Ward")
    world.assign(resident, START, clinic, AM)
    world.assign(resident, START, ward, PM)  # AM and PM on one day: fine
    assert validate(world.problem()).valid
    world.assign(resident, START, ward, AM)
    world.assign(faculty, START, clinic, AM, SUPERVISING)
    world.assign(faculty, START, ward, AM, SUPERVISING)
    violations = of_rule(validate(world.problem()), RuleName.DOUBLE_BOOKING)
    assert {(v.person_id, v.block_id) for v in violations} == {
        (resident.id, world.block(START).id),
        (faculty.id, world.block(START).id),
    }
    assert all(v.severity is Severity.CRITICAL for v in violations)
    assert any("Dr Cole has 2 assignments" in v.message for v in violations)
    assert {v.message for v in violations} == {
        f"Dr Cole has 2 assignments on {START} AM (Clinic, Ward): keep one, remove 1 other",
        f"Dr Dane has 2 assignments on {START} AM (Clinic, Ward): keep one, remove 1 other",
    }
    world.assign(resident, START, world.rotation("Lab"), AM)
    tripled = of_rule(validate(world.problem()), RuleName.DOUBLE_BOOKING)
    assert (
        f"Dr Cole has 3 assignments on {START} AM (Clinic, Lab, Ward): keep one, remove 2 "
        "others" in {v.message for v in tripled}
    )


# --------------------------------------------------------------------------- absence


@pytest.mark.parametrize(
    ("offset", "clashes"),
    [
        pytest.param(-1, False, id="day-before"),
        pytest.param(0, True, id="first-day"),
        pytest.param(2, True, id="last-day"),
        pytest.param(3, False, id="day-after"),
    ],
)
@pytest.mark.parametrize("kind", [PersonType.RESIDENT, PersonType.FACULTY])
def test_absence_dates_are_inclusive(offset: int, clashes: bool, kind: PersonType) -> None:
    world = World()
    person = world.resident(1) if kind is PersonType.RESIDENT else world.faculty()
    clinic = world.rotation("Clinic")
    first = START + timedelta(days=10)
    world.absent(person, first, first + timedelta(days=2))
    world.assign(person, first + timedelta(days=offset), clinic, PM)
    violations = of_rule(validate(world.problem()), RuleName.ABSENCE)
    assert bool(violations) is clashes
    if clashes:
        [violation] = violations
        assert violation.severity is Severity.HIGH
        assert violation.person_id == person.id
        assert violation.block_id == world.block(first + timedelta(days=offset), PM).id
        assert violation.message == (
            f"{person.name or f'person {person.id}'} is absent from {first} to "
            f"{first + timedelta(days=2)} but assigned to Clinic on "
            f"{first + timedelta(days=offset)} PM: hand it to someone free then (a swap, or "
            f"regenerate the schedule) or remove it"
        )


# --------------------------------------------------------------------------- coverage


def test_coverage_minimum_maximum_and_rate() -> None:
    world = World(days=2)
    world.period_blocks()  # 4 blocks
    clinic = world.rotation("Clinic", min_residents=1, max_residents=2)
    world.rotation("Elective", min_residents=0, max_residents=1)
    a, b, c = world.resident(1), world.resident(2), world.resident(3)
    world.assign(a, START, clinic, AM)  # meets the minimum
    for person in (a, b, c):  # above the maximum, still meets the minimum
        world.assign(person, START, clinic, PM)
    report = validate(world.problem())
    coverage = of_rule(report, RuleName.COVERAGE)
    assert report.coverage_rate == pytest.approx(2 / 4)
    assert all(v.severity is Severity.MEDIUM and v.person_id is None for v in coverage)
    messages = {v.block_id: v.message for v in coverage}
    assert len(coverage) == 3  # PM over the max, both blocks of the second day under the min
    assert (
        "has 3 residents, allows at most 2: move 1 elsewhere" in messages[world.block(START, PM).id]
    )
    second = world.block(START + timedelta(days=1), AM).id
    assert "has 0 residents, needs at least 1: add 1" in messages[second]


def test_coverage_counts_only_primary_residents() -> None:
    world = World(days=1)
    clinic = world.rotation("Clinic", min_residents=1)
    world.assign(world.faculty(), START, clinic)  # a faculty as primary: not coverage
    report = validate(world.problem())
    assert report.coverage_rate == 0.0
    assert len(of_rule(report, RuleName.COVERAGE)) == 1


def test_blocks_outside_the_period_are_not_checked_per_block() -> None:
    world = World()
    clinic = world.rotation("Clinic", min_residents=1)
    resident = world.resident(1)
    before = START - timedelta(days=1)
    world.assign(resident, before, clinic)
    world.assign(resident, before, clinic)  # a double booking in the history
    world.absent(resident, before, before)
    world.period_blocks()
    for day in days_from(START, 28):
        world.assign(world.resident(2), day, clinic, AM)
        world.assign(world.resident(2), day, clinic, PM)
    report = validate(world.problem())
    assert report.valid
    assert report.coverage_rate == 1.0


# --------------------------------------------------------------------------- report shape


def test_violations_sorted_by_date_then_rule_then_person() -> None:
    world = World()
    ward = world.rotation("Ward", requires_supervision=True, min_residents=0)
    r1, r2 = world.resident(1), world.resident(1)
    day2 = START + timedelta(days=2)
    world.assign(r2, day2, ward)
    world.assign(r2, day2, ward)
    world.assign(r1, day2, ward)
    world.assign(r1, day2, ward)
    world.assign(r1, START, ward)
    report = validate(world.problem())
    keys = [(v.rule, v.person_id) for v in report.violations]
    assert keys == [
        (RuleName.SUPERVISION, None),  # START
        (RuleName.SUPERVISION, None),  # day 2: rule order, then person
        (RuleName.DOUBLE_BOOKING, r1.id),
        (RuleName.DOUBLE_BOOKING, r2.id),
    ]


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("block", id="block"),
        pytest.param("person", id="person"),
        pytest.param("rotation", id="rotation"),
    ],
)
def test_dangling_references_are_refused(broken: str) -> None:
    world = World()
    clinic = world.rotation("Clinic")
    assignment = world.assign(world.resident(1), START, clinic)
    stray = uuid.uuid4()
    bad = {
        "block": replace(assignment, block_id=stray),
        "person": replace(assignment, person_id=stray),
        "rotation": replace(assignment, rotation_id=stray),
    }[broken]
    with pytest.raises(ValueError, match="unknown"):
        validate(replace(world.problem(), assignments=(bad,)))


def test_people_and_rotations_keyed_by_another_id_are_refused() -> None:
    world = World()
    clinic = world.rotation("Clinic")
    resident = world.resident(1)
    world.assign(resident, START, clinic)
    problem = world.problem()
    with pytest.raises(ValueError, match="keyed by their own id"):
        validate(replace(problem, people={uuid.uuid4(): resident}))
    with pytest.raises(ValueError, match="keyed by their own id"):
        validate(replace(problem, rotations={uuid.uuid4(): clinic}))


def test_reversed_periods_are_refused() -> None:
    problem = World().problem()
    with pytest.raises(ValueError, match="around"):
        validate(problem, around=(START + timedelta(days=1), START))
    with pytest.raises(ValueError, match="period"):
        validate(replace(problem, end_date=START - timedelta(days=1)))


# --------------------------------------------------------------------------- around, warnings


def test_around_checks_only_the_blocks_on_those_dates() -> None:
    world = World()
    clinic = world.rotation("Clinic", min_residents=1)
    world.period_blocks()
    day = START + timedelta(days=5)
    world.assign(world.resident(1), day, clinic, AM)
    report = validate(world.problem(), around=(day, day))
    assert [v.block_id for v in report.violations] == [world.block(day, PM).id]
    assert report.coverage_rate == 0.5


def test_around_sees_every_window_that_holds_the_date() -> None:
    world = World(days=90)
    resident = world.resident(1)
    _duty_days(world, resident, days_from(START + timedelta(days=40), 7))
    edge = START + timedelta(days=40 + 6 + 27)  # 27 days after the run's end: out of reach
    assert of_rule(validate(world.problem(), around=(edge, edge)), RuleName.ONE_IN_SEVEN) == []
    inside = START + timedelta(days=40)
    assert of_rule(validate(world.problem(), around=(inside, inside)), RuleName.ONE_IN_SEVEN)


def test_around_outside_the_period_checks_nothing() -> None:
    world = World()
    clinic = world.rotation("Clinic", min_residents=1)
    world.period_blocks()
    later = world.end + timedelta(days=3)
    report = validate(world.problem(), around=(later, later))
    assert report == ValidationReport(valid=True, violations=(), coverage_rate=1.0)
    assert clinic.min_residents == 1


def test_warnings_for_reports_what_the_new_assignment_causes() -> None:
    world = World()
    ward = world.rotation("Ward", requires_supervision=True)
    other = world.rotation("Elective", max_residents=1)
    resident, newcomer, absent = world.resident(1), world.resident(1), world.resident(2)
    world.period_blocks()
    am = world.block(START, AM)
    world.assign(world.faculty(), START, ward, AM, SUPERVISING)
    world.assign(resident, START, ward, AM)
    world.absent(absent, START, START)
    problem = world.problem()
    fine = Assignment(newcomer.id, am.id, ward.id, PRIMARY)
    assert warnings_for(problem, fine) == ()  # two PGY-1 for one faculty
    clash = Assignment(absent.id, am.id, other.id, PRIMARY)
    warned = warnings_for(problem, clash)
    assert [(v.rule, v.person_id, v.block_id) for v in warned] == [
        (RuleName.ABSENCE, absent.id, am.id)
    ]
    double = Assignment(resident.id, am.id, other.id, PRIMARY)
    assert [(v.rule, v.person_id) for v in warnings_for(problem, double)] == [
        (RuleName.DOUBLE_BOOKING, resident.id)
    ]


def test_warnings_for_reports_a_violation_made_worse() -> None:
    world = World()
    ward = world.rotation("Ward", requires_supervision=True)
    for _ in range(3):
        world.assign(world.resident(1), START, ward)
    newcomer = world.resident(1)
    problem = world.problem()
    [before] = validate(problem).violations
    more = Assignment(newcomer.id, world.block(START).id, ward.id, PRIMARY)
    [worse] = warnings_for(problem, more)
    assert worse.rule is RuleName.SUPERVISION
    assert worse != before
    assert "4 residents" in worse.message


def test_warnings_for_refuses_an_unknown_block() -> None:
    world = World()
    clinic = world.rotation("Clinic")
    stray = Assignment(world.resident(1).id, uuid.uuid4(), clinic.id, PRIMARY)
    with pytest.raises(ValueError, match="unknown block"):
        warnings_for(world.problem(), stray)


# --------------------------------------------------------------------------- properties

PERIOD_DAYS = 21
HISTORY_DAYS = 27


@st.composite
def problems(draw: st.DrawFn) -> ScheduleProblem:
    """Small schedules dense enough to break every rule: a period of 21 days, 27 days of
    history, 12-hour blocks (so 80_hour is reachable), a few people of both kinds."""
    world = World(days=PERIOD_DAYS)
    residents = [world.resident(draw(st.integers(1, 3))) for _ in range(draw(st.integers(1, 3)))]
    faculty = [world.faculty() for _ in range(draw(st.integers(0, 2)))]
    rotations = [
        world.rotation(
            f"R{i}",
            kind=draw(st.sampled_from(RotationKind)),
            min_residents=draw(st.integers(0, 1)),
            max_residents=draw(st.integers(1, 2)),
            requires_supervision=draw(st.booleans()),
            hours_per_block=draw(st.sampled_from([6.0, 12.0, 12.5])),
        )
        for i in range(draw(st.integers(1, 2)))
    ]
    people = residents + faculty
    first = START - timedelta(days=HISTORY_DAYS)
    span = HISTORY_DAYS + PERIOD_DAYS
    for day in days_from(START, PERIOD_DAYS):
        world.block(day, AM)
        world.block(day, PM)
    # Per person a dense streak (to reach the rolling limits) plus scattered extras.
    for person in people:
        streak_start = draw(st.integers(0, span - 1))
        streak = draw(st.integers(0, span - streak_start))
        rotation = draw(st.sampled_from(rotations))
        role = PRIMARY if person.type is PersonType.RESIDENT else SUPERVISING
        for i in range(streak_start, streak_start + streak):
            for tod in (AM, PM):
                world.assign(person, first + timedelta(days=i), rotation, tod, role)
    extras = draw(
        st.lists(
            st.tuples(
                st.sampled_from(people),
                st.integers(0, span - 1),
                st.sampled_from([AM, PM]),
                st.sampled_from(rotations),
                st.sampled_from([PRIMARY, SUPERVISING]),
            ),
            max_size=25,
        )
    )
    for person, offset, tod, rotation, role in extras:
        world.assign(person, first + timedelta(days=offset), rotation, tod, role)
    for person in draw(st.lists(st.sampled_from(people), max_size=2)):
        begin = first + timedelta(days=draw(st.integers(0, span - 1)))
        world.absent(person, begin, begin + timedelta(days=draw(st.integers(0, 4))))
    return world.problem()


@st.composite
def problem_and_assignment(draw: st.DrawFn) -> tuple[ScheduleProblem, Assignment]:
    problem = draw(problems())
    block = draw(st.sampled_from(sorted(problem.blocks.values(), key=lambda b: b.id)))
    person = draw(st.sampled_from(sorted(problem.people.values(), key=lambda p: p.id)))
    rotation = draw(st.sampled_from(sorted(problem.rotations.values(), key=lambda r: r.id)))
    role = draw(st.sampled_from([PRIMARY, SUPERVISING]))
    return problem, Assignment(person.id, block.id, rotation.id, role)


ROLLING = {RuleName.EIGHTY_HOUR, RuleName.ONE_IN_SEVEN}
PER_BLOCK = {RuleName.SUPERVISION, RuleName.DOUBLE_BOOKING, RuleName.ABSENCE, RuleName.COVERAGE}
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def rolling_keys(report: ValidationReport) -> set[tuple[RuleName, uuid.UUID | None]]:
    return {(v.rule, v.person_id) for v in report.violations if v.rule in ROLLING}


@PROPERTY_SETTINGS
@given(case=problem_and_assignment())
def test_adding_an_assignment_never_removes_a_rolling_violation(
    case: tuple[ScheduleProblem, Assignment],
) -> None:
    problem, extra = case
    before = rolling_keys(validate(problem))
    after = rolling_keys(validate(replace(problem, assignments=(*problem.assignments, extra))))
    assert before <= after


@PROPERTY_SETTINGS
@given(problem=problems(), data=st.data())
def test_around_agrees_with_the_full_check(problem: ScheduleProblem, data: st.DataObject) -> None:
    full = validate(problem)
    lo = data.draw(st.integers(-5, PERIOD_DAYS + 4), label="first offset")
    hi = data.draw(st.integers(lo, PERIOD_DAYS + 4), label="last offset")
    first, last = START + timedelta(days=lo), START + timedelta(days=hi)
    local = validate(problem, around=(first, last))
    in_range = {b.id for b in problem.blocks.values() if first <= b.date <= last}
    # Per-block rules: exactly the full check's violations on blocks dated in [first, last].
    assert [v for v in local.violations if v.rule in PER_BLOCK] == [
        v for v in full.violations if v.rule in PER_BLOCK and v.block_id in in_range
    ]
    # Rolling rules: nobody is accused locally who is clean in the full check.
    assert rolling_keys(local) <= rolling_keys(full)
    # `around` covering the period (or more) is the full check.
    assert validate(problem, around=(problem.start_date, problem.end_date)) == full
    wide = (problem.start_date - timedelta(days=60), problem.end_date + timedelta(days=60))
    assert validate(problem, around=wide) == full


@PROPERTY_SETTINGS
@given(problem=problems(), data=st.data())
def test_around_is_the_full_check_of_the_period_cut_to_those_dates(
    problem: ScheduleProblem, data: st.DataObject
) -> None:
    """Checking around [first, last] is checking a schedule whose period is [first, last]
    (within the real period): the same 28-day windows, the same blocks, the same history."""
    lo = data.draw(st.integers(0, PERIOD_DAYS - 1), label="first offset")
    hi = data.draw(st.integers(lo, PERIOD_DAYS - 1), label="last offset")
    first, last = START + timedelta(days=lo), START + timedelta(days=hi)
    cut = replace(problem, start_date=first, end_date=last)
    assert validate(problem, around=(first, last)) == validate(cut)


@PROPERTY_SETTINGS
@given(problem=problems(), seed=st.randoms(use_true_random=False))
def test_violations_are_deterministic_and_independent_of_assignment_order(
    problem: ScheduleProblem, seed: random.Random
) -> None:
    first = validate(problem)
    assert validate(problem) == first
    shuffled = list(problem.assignments)
    seed.shuffle(shuffled)
    assert validate(replace(problem, assignments=tuple(shuffled))) == first
    # Advisory warnings (80_hour_approaching, rest_between_shifts) are counted and listed but
    # leave a schedule valid.
    assert first.valid is all(v.rule in ADVISORY for v in first.violations)
    assert first.total_violations == len(first.violations)
    assert 0.0 <= first.coverage_rate <= 1.0


@PROPERTY_SETTINGS
@given(case=problem_and_assignment())
def test_warnings_are_new_violations_of_the_edited_check(
    case: tuple[ScheduleProblem, Assignment],
) -> None:
    problem, extra = case
    warned = warnings_for(problem, extra)
    day = problem.blocks[extra.block_id].date
    after = validate(replace(problem, assignments=(*problem.assignments, extra)), around=(day, day))
    before = validate(problem, around=(day, day))
    assert set(warned) == set(after.violations) - set(before.violations)
    assert list(warned) == [v for v in after.violations if v in set(warned)]
    # Anything warned about concerns the new assignment's person or block.
    assert all(v.person_id == extra.person_id or v.block_id == extra.block_id for v in warned)


def _naive_rolling_counts(problem: ScheduleProblem) -> dict[tuple[RuleName, uuid.UUID], int]:
    """The rolling rules by brute force, window by window: how many violations per person
    (one per run of consecutive over-limit windows, one per run of 7+ duty days)."""
    counts: dict[tuple[RuleName, uuid.UUID], int] = {}
    starts = days_from(
        problem.start_date - timedelta(days=27), (problem.end_date - problem.start_date).days + 28
    )
    for person in problem.people.values():
        if person.type is not PersonType.RESIDENT:
            continue
        mine = [a for a in problem.assignments if a.person_id == person.id]
        dated = [(problem.blocks[a.block_id].date, problem.rotations[a.rotation_id]) for a in mine]
        duty_days = {day for day, _ in dated}

        def runs(flags: list[bool]) -> int:
            return sum(1 for i, f in enumerate(flags) if f and (i == 0 or not flags[i - 1]))

        hours = [
            sum(r.hours_per_block for day, r in dated if s <= day <= s + timedelta(days=27))
            for s in starts
        ]
        busy = [sum(1 for day in duty_days if s <= day <= s + timedelta(days=27)) for s in starts]
        long_runs = 0
        for day in sorted(duty_days):
            if day - timedelta(days=1) in duty_days:
                continue  # not the first day of its run
            end = day
            while end + timedelta(days=1) in duty_days:
                end += timedelta(days=1)
            touches = day <= problem.end_date and end >= problem.start_date
            long_runs += (end - day).days + 1 > 6 and touches
        counts[(RuleName.EIGHTY_HOUR, person.id)] = runs([h > 320 + 1e-9 for h in hours])
        counts[(RuleName.ONE_IN_SEVEN, person.id)] = runs([b > 24 for b in busy]) + long_runs
    return {key: n for key, n in counts.items() if n}


@PROPERTY_SETTINGS
@given(problem=problems())
def test_rolling_rules_agree_with_a_brute_force_count(problem: ScheduleProblem) -> None:
    engine: dict[tuple[RuleName, uuid.UUID], int] = {}
    for v in validate(problem).violations:
        if v.rule in ROLLING:
            assert v.person_id is not None
            assert v.block_id is None
            engine[(v.rule, v.person_id)] = engine.get((v.rule, v.person_id), 0) + 1
    assert engine == _naive_rolling_counts(problem)


def _naive_per_block_keys(
    problem: ScheduleProblem,
) -> set[tuple[RuleName, uuid.UUID | None, uuid.UUID | None, str]]:
    """The per-block rules the plain way, one (block, rotation) or (person, block) at a time;
    the last element tells apart violations of one block (the rotation, or the person)."""
    keys: set[tuple[RuleName, uuid.UUID | None, uuid.UUID | None, str]] = set()
    period = [
        b for b in problem.blocks.values() if problem.start_date <= b.date <= problem.end_date
    ]
    for block in period:
        here = [a for a in problem.assignments if a.block_id == block.id]
        for rotation in problem.rotations.values():
            on = [a for a in here if a.rotation_id == rotation.id]
            residents = {
                a.person_id: problem.people[a.person_id]
                for a in on
                if a.role is PRIMARY and problem.people[a.person_id].type is PersonType.RESIDENT
            }
            faculty = {
                a.person_id
                for a in on
                if a.role is SUPERVISING and problem.people[a.person_id].type is PersonType.FACULTY
            }
            if residents and len(faculty) < required_faculty(rotation, residents.values()):
                keys.add((RuleName.SUPERVISION, None, block.id, rotation.name))
            if not rotation.min_residents <= len(residents) <= rotation.max_residents:
                keys.add((RuleName.COVERAGE, None, block.id, rotation.name))
        for person_id in {a.person_id for a in here}:
            if sum(a.person_id == person_id for a in here) > 1:
                keys.add((RuleName.DOUBLE_BOOKING, person_id, block.id, ""))
            if any(
                ab.person_id == person_id and ab.start_date <= block.date <= ab.end_date
                for ab in problem.absences
            ):
                keys.add((RuleName.ABSENCE, person_id, block.id, ""))
    return keys


@PROPERTY_SETTINGS
@given(problem=problems())
def test_per_block_rules_agree_with_a_plain_count(problem: ScheduleProblem) -> None:
    rotation_names = [r.name for r in problem.rotations.values()]
    found: set[tuple[RuleName, uuid.UUID | None, uuid.UUID | None, str]] = set()
    per_block = [v for v in validate(problem).violations if v.rule in PER_BLOCK]
    for v in per_block:
        # The generator names rotations R0, R1: the message starts with the rotation's name.
        named = next((n for n in rotation_names if v.message.startswith(f"{n} ")), "")
        found.add((v.rule, v.person_id, v.block_id, named if v.person_id is None else ""))
    assert len(found) == len(per_block)  # no violation reported twice
    assert found == _naive_per_block_keys(problem)


# --------------------------------------------------------------------------- call


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour))


@pytest.mark.parametrize(
    ("extra", "over"),
    [pytest.param(4, False, id="24+4"), pytest.param(5, True, id="24+5")],
)
def test_continuous_duty_is_24_hours_plus_4(extra: int, over: bool) -> None:
    # 24 h in-house call from 07:00, then a rotation of `extra` hours from 07:00 the next day.
    world = World()
    resident = world.resident(2, name="Dr Bell")
    handover = world.rotation("Handover", hours_per_block=float(extra))
    world.call(resident, _at(START, 7), 24)
    world.assign(resident, START + timedelta(days=1), handover, AM)
    found = of_rule(validate(world.problem()), RuleName.CONTINUOUS_DUTY)
    if not over:
        assert found == []
        return
    [violation] = found
    assert violation.severity is Severity.CRITICAL
    assert violation.person_id == resident.id
    assert violation.message == (
        f"Dr Bell: 29 hours of continuous duty with in-house call from {START} 07:00 to "
        f"{START + timedelta(days=1)} 12:00 (at most 24 + 4 for transitions): end it by "
        f"{START + timedelta(days=1)} 11:00"
    )


@pytest.mark.parametrize(
    ("rest", "short"),
    [pytest.param(14, False, id="14h"), pytest.param(13, True, id="13h")],
)
def test_fourteen_hours_free_after_24_hours_of_call(rest: int, short: bool) -> None:
    world = World()
    resident = world.resident(2, name="Dr Bell")
    world.call(resident, _at(START, 7), 24)
    world.call(resident, _at(START + timedelta(days=1), 7 + rest), 12)
    report = validate(world.problem())
    found = of_rule(report, RuleName.REST_AFTER_CALL)
    assert of_rule(report, RuleName.REST_BETWEEN_SHIFTS) == []  # one rule per gap
    if not short:
        assert found == []
        return
    [violation] = found
    assert violation.severity is Severity.HIGH
    assert violation.message == (
        f"Dr Bell: 13 hours free after in-house call of 24 hours or more ending "
        f"{START + timedelta(days=1)} 07:00 (at least 14): the next duty may start at "
        f"{START + timedelta(days=1)} 21:00"
    )
    assert not report.valid


@pytest.mark.parametrize(
    ("gap", "short"),
    [pytest.param(8, False, id="8h"), pytest.param(7, True, id="7h")],
)
def test_eight_hours_between_shifts_is_a_warning(gap: int, short: bool) -> None:
    # A 12 h night call 19:00-07:00, then the next one `gap` hours later.
    world = World()
    resident = world.resident(2, name="Dr Bell")
    world.call(resident, _at(START, 19), 12)
    world.call(resident, _at(START + timedelta(days=1), 7 + gap), 6)
    report = validate(world.problem())
    found = of_rule(report, RuleName.REST_BETWEEN_SHIFTS)
    assert bool(found) is short
    assert report.valid  # a warning: the schedule stays valid
    if short:
        assert found[0].severity is Severity.LOW
        assert found[0].message.startswith("Dr Bell: 7 hours free after a shift ending")
    assert of_rule(report, RuleName.REST_AFTER_CALL) == []


def test_a_days_blocks_and_its_evening_call_are_one_shift() -> None:
    # AM block 07:00-11:00, PM block 13:00-17:00, call 19:00-07:00: breaks of 2 hours inside
    # one shift, not shifts with 2 hours of rest between them.
    world = World()
    resident = world.resident(2, name="Dr Bell")
    clinic = world.rotation(hours_per_block=4.0)
    world.assign(resident, START, clinic, AM)
    world.assign(resident, START, clinic, PM)
    world.call(resident, _at(START, 19), 12)
    report = validate(world.problem())
    assert of_rule(report, RuleName.REST_BETWEEN_SHIFTS) == []
    # The day's shift with its call runs 07:00 to 07:00: 24 hours of duty with call, so the
    # 14 hours after call apply (and the continuous-duty cap is met exactly).
    assert of_rule(report, RuleName.CONTINUOUS_DUTY) == []
    world.assign(resident, START + timedelta(days=1), clinic, PM)  # 6 hours after it
    [short] = of_rule(validate(world.problem()), RuleName.REST_AFTER_CALL)
    assert short.message.startswith("Dr Bell: 6 hours free after in-house call of 24 hours")


@pytest.mark.parametrize(
    ("gap", "warned"),
    [pytest.param(8, False, id="8h"), pytest.param(7, True, id="7h")],
)
def test_a_shift_on_the_next_day_still_needs_8_hours_free(gap: int, warned: bool) -> None:
    # A PM block 13:00-23:00 (10 hours), then a call `gap` hours later, the next morning:
    # separate days are separate shifts, so 7 hours between them warn and 8 do not.
    world = World()
    resident = world.resident(2, name="Dr Bell")
    late = world.rotation("Late", hours_per_block=10.0)
    world.assign(resident, START, late, PM)
    next_start = _at(START, 23) + timedelta(hours=gap)
    world.call(resident, next_start, 4)
    found = of_rule(validate(world.problem()), RuleName.REST_BETWEEN_SHIFTS)
    assert bool(found) is warned
    if warned:
        assert found[0].message.startswith(f"Dr Bell: 7 hours free after a shift ending {START}")


@pytest.mark.parametrize(
    ("nights", "over"),
    [pytest.param(9, False, id="every-third-night"), pytest.param(10, True, id="one-more")],
)
def test_call_frequency_is_every_third_night_averaged_over_28_days(nights: int, over: bool) -> None:
    world = World()
    resident = world.resident(2, name="Dr Bell")
    for i in range(nights):
        world.call(resident, _at(START + timedelta(days=3 * i if i < 9 else 26), 19), 12)
    found = of_rule(validate(world.problem()), RuleName.CALL_FREQUENCY)
    if not over:
        assert found == []
        return
    [violation] = found
    # Nights on days 0, 3, ..., 24 and 26: the windows from the day before START and from
    # START both hold all 10; the earliest is named, the run noted.
    day_before = START - timedelta(days=1)
    assert violation.message == (
        f"Dr Bell: 10 in-house call nights in the 28 days from {day_before} to "
        f"{day_before + timedelta(days=27)} (every third night at most: 9): move 1 to someone "
        f"else; the 2 windows starting {day_before} through {START} are all over"
    )


def test_call_hours_count_toward_80_hours_split_at_midnight() -> None:
    # 300 h of 10 h blocks over 28 days (spread, a day off in 7) plus one 24 h call: 324 h.
    world, resident, _ = _hours_world(30)
    world.call(resident, _at(START + timedelta(days=27), 7), 24)  # half of it after the window
    assert of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR) == []  # 300 + 17
    world.call(resident, _at(START + timedelta(days=25), 7), 4)  # + 4: 321 in START's window
    [violation] = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR)
    assert "321 hours to" in violation.message


def test_home_call_counts_only_the_hours_worked() -> None:
    world, resident, _ = _hours_world(32)  # exactly 320 h
    world.call(resident, _at(START + timedelta(days=3), 19), 12, CallKind.HOME)
    assert of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR) == []
    world.call(resident, _at(START + timedelta(days=5), 19), 12, CallKind.HOME, worked=1.5)
    [violation] = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR)
    assert "321.5 hours to" in violation.message
    # Home call is not in-house call: no call nights, no continuous duty from it.
    assert of_rule(validate(world.problem()), RuleName.CALL_FREQUENCY) == []


@pytest.mark.parametrize(
    ("hours", "over"),
    [pytest.param(28.0, False, id="exactly-80"), pytest.param(28.07, True, id="tipping")],
)
def test_moonlighting_counts_toward_80_hours(hours: float, over: bool) -> None:
    # 292 h of blocks + 4 weeks of moonlighting: 4 x 7 = 28 h tips 320 only with more.
    world, resident, _ = _hours_world(29)
    world.assign(resident, START + timedelta(days=27), world.rotation("Extra", hours_per_block=2.0))
    for week in range(4):
        world.moonlighting.append(
            Moonlighting(resident.id, START + timedelta(days=7 * week), hours / 4)
        )
    found = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR)
    assert bool(found) is over


@pytest.mark.parametrize(
    ("blocks", "warned"),
    [
        pytest.param(30, False, id="75h"),
        pytest.param(31, True, id="77.5h"),
        pytest.param(32, True, id="80h"),
    ],
)
def test_approaching_80_hours_warns_from_a_76_hour_average(blocks: int, warned: bool) -> None:
    world, _resident, _ = _hours_world(blocks)
    report = validate(world.problem())
    found = of_rule(report, RuleName.EIGHTY_HOUR_APPROACHING)
    assert bool(found) is warned
    if warned:
        assert found[0].severity is Severity.LOW
        assert "approaching the limit of 80" in found[0].message
        assert report.valid  # a warning only


def test_a_call_with_an_unknown_person_or_backwards_is_refused() -> None:
    world = World()
    stranger = Person(uuid.uuid4(), PersonType.RESIDENT, pgy_level=1)
    world.call(stranger, _at(START, 7), 24)
    with pytest.raises(ValueError, match="unknown person"):
        validate(world.problem())
    world = World()
    resident = world.resident(1)
    world.calls.append(Call(resident.id, _at(START, 7), _at(START, 6)))
    with pytest.raises(ValueError, match="ends before it starts"):
        validate(world.problem())


def test_faculty_call_is_not_limited() -> None:
    world = World()
    boss = world.faculty()
    for i in range(20):
        world.call(boss, _at(START + timedelta(days=i), 7), 30)
    assert validate(world.problem()).violations == ()


@pytest.mark.parametrize(
    ("extra", "warned"), [pytest.param(3.9, False, id="303.9h"), pytest.param(4, True, id="304h")]
)
def test_the_76_hour_average_boundary(extra: float, warned: bool) -> None:
    world, resident, _ = _hours_world(30)  # 300 h in START's window
    world.call(resident, _at(START + timedelta(days=6), 7), extra)  # on a day off
    found = of_rule(validate(world.problem()), RuleName.EIGHTY_HOUR_APPROACHING)
    assert bool(found) is warned
    if warned:
        # Every window holding the 30 blocks (the last on START + 16) and the call holds 304 h;
        # the earliest is named.
        first = START + timedelta(days=16) - timedelta(days=27)
        assert found[0].message == (
            f"Dr Ames: 76 duty hours a week averaged over the 28 days from {first}, approaching "
            f"the limit of 80: at most 16 more hours fit in the 28 days to "
            f"{first + timedelta(days=27)}; the 12 windows starting {first} through {START} are "
            f"all at 76 a week or more"
        )
