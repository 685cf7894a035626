"""The scheduling permission table, the current-block rule and the swap check, without I/O."""

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from freezegun import freeze_time

from tandem.db import utcnow
from tandem.identity.scopes import Role, Scope, scopes_for
from tandem.scheduling.domain import (
    Absence,
    Assignment,
    AssignmentRole,
    Block,
    Person,
    PersonType,
    Rotation,
    RotationKind,
    RuleName,
    ScheduleProblem,
    TimeOfDay,
)
from tandem.scheduling.service import block_key_at, role_for
from tandem.scheduling.swaps import swap_violations


@pytest.mark.parametrize(
    ("role", "read", "write", "admin"),
    [
        pytest.param(Role.member, True, False, False, id="member"),
        pytest.param(Role.reviewer, True, False, False, id="reviewer"),
        pytest.param(Role.coordinator, True, True, False, id="coordinator"),
        pytest.param(Role.admin, True, True, True, id="admin"),
    ],
)
def test_roles_grant_the_schedule_scopes(role: Role, read: bool, write: bool, admin: bool) -> None:
    granted = scopes_for(role)
    assert (
        Scope.schedule_read in granted,
        Scope.schedule_write in granted,
        Scope.schedule_admin in granted,
    ) == (read, write, admin)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(datetime(2027, 3, 1, 0, 0, tzinfo=UTC), TimeOfDay.AM, id="midnight"),
        pytest.param(datetime(2027, 3, 1, 11, 59, 59, tzinfo=UTC), TimeOfDay.AM, id="11:59"),
        pytest.param(datetime(2027, 3, 1, 12, 0, tzinfo=UTC), TimeOfDay.PM, id="noon"),
        pytest.param(datetime(2027, 3, 1, 23, 59, tzinfo=UTC), TimeOfDay.PM, id="23:59"),
    ],
)
def test_the_block_of_a_moment(moment: datetime, expected: TimeOfDay) -> None:
    assert block_key_at(moment) == (date(2027, 3, 1), expected)


def test_a_moment_is_read_in_utc() -> None:
    # 09:00 in UTC+10 is 23:00 the day before in UTC.
    moment = datetime(2027, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=10)))
    assert block_key_at(moment) == (date(2027, 3, 1), TimeOfDay.PM)


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="Naive datetime"):
        block_key_at(datetime(2027, 3, 1, 9, 0))


@freeze_time("2027-03-01 12:00:00")
def test_now_at_noon_is_the_pm_block() -> None:
    assert block_key_at(utcnow()) == (date(2027, 3, 1), TimeOfDay.PM)


@pytest.mark.parametrize(
    ("type_", "role"),
    [
        pytest.param(PersonType.RESIDENT, AssignmentRole.PRIMARY, id="resident"),
        pytest.param(PersonType.FACULTY, AssignmentRole.SUPERVISING, id="faculty"),
    ],
)
def test_the_role_a_person_takes(type_: PersonType, role: AssignmentRole) -> None:
    assert role_for(Person(uuid.uuid4(), type_)) is role


# --- the swap check ---------------------------------------------------------------------------


def _problem(
    *, absent: bool = False, bob_busy: bool = False
) -> tuple[ScheduleProblem, dict[str, Any]]:
    day = date(2027, 3, 1)
    ada = Person(uuid.uuid4(), PersonType.RESIDENT, pgy_level=2, name="Ada")
    bob = Person(uuid.uuid4(), PersonType.RESIDENT, pgy_level=2, name="Bob")
    am = Block(uuid.uuid4(), day, TimeOfDay.AM)
    clinic = Rotation(uuid.uuid4(), "Clinic", RotationKind.CLINIC, requires_supervision=False)
    ward = Rotation(uuid.uuid4(), "Ward", RotationKind.INPATIENT, requires_supervision=False)
    given = Assignment(ada.id, am.id, clinic.id, AssignmentRole.PRIMARY, id=uuid.uuid4())
    assignments = [given]
    if bob_busy:
        assignments.append(
            Assignment(bob.id, am.id, ward.id, AssignmentRole.PRIMARY, id=uuid.uuid4())
        )
    problem = ScheduleProblem(
        start_date=day,
        end_date=day,
        people={ada.id: ada, bob.id: bob},
        blocks={am.id: am},
        rotations={clinic.id: clinic, ward.id: ward},
        assignments=tuple(assignments),
        absences=(Absence(bob.id, day, day),) if absent else (),
    )
    return problem, {"given": given, "ada": ada, "bob": bob}


def test_a_harmless_swap_adds_no_violation() -> None:
    problem, named = _problem()
    assert swap_violations(problem, named["given"].id, named["bob"].id) == ()


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        pytest.param({"absent": True}, RuleName.ABSENCE, id="absence"),
        pytest.param({"bob_busy": True}, RuleName.DOUBLE_BOOKING, id="double-booking"),
    ],
)
def test_a_swap_that_breaks_a_rule_names_it(options: dict[str, bool], rule: RuleName) -> None:
    problem, named = _problem(**options)
    violations = swap_violations(problem, named["given"].id, named["bob"].id)
    assert [v.rule for v in violations] == [rule]
    assert violations[0].person_id == named["bob"].id
