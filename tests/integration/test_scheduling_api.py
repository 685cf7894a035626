"""The scheduling API (API.md "Scheduling"): people, absences, blocks, rotations, schedules and
manual assignments, with tenancy, input checks and permissions, on SQLite and PostgreSQL."""

import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.scheduling.models import Assignment
from tests.conftest import LoginAs
from tests.factories import make_user
from tests.integration.scheduling_setup import SchedulingApi

pytestmark = pytest.mark.anyio

MONDAY = date(2027, 3, 1)


@pytest.fixture
async def coordinator(db_session: AsyncSession) -> User:
    return await make_user(Role.coordinator)


@pytest.fixture
async def api(client: httpx.AsyncClient, login_as: LoginAs, coordinator: User) -> SchedulingApi:
    return SchedulingApi(client, await login_as(coordinator))


@pytest.fixture
async def other_tenant(client: httpx.AsyncClient, login_as: LoginAs) -> SchedulingApi:
    return SchedulingApi(client, await login_as(await make_user(Role.admin)))


# --- people -------------------------------------------------------------------------------------


async def test_people_are_created_read_filtered_changed_and_deleted(api: SchedulingApi) -> None:
    client, headers = api.client, api.headers
    resident = await api.person(
        "resident", name="Ada", email="Ada@Example.com", pgy_level=2, specialty="Medicine"
    )
    assert {k: resident[k] for k in ("name", "email", "type", "pgy_level", "specialty")} == {
        "name": "Ada",
        "email": "ada@example.com",
        "type": "resident",
        "pgy_level": 2,
        "specialty": "Medicine",
    }
    faculty = await api.person("faculty", name="Grace")
    assert faculty["pgy_level"] is None

    residents = (await client.get("/api/v1/people?type=resident", headers=headers)).json()
    assert [p["id"] for p in residents["items"]] == [resident["id"]]
    assert residents["count"] == 1
    everyone = (await client.get("/api/v1/people", headers=headers)).json()
    assert everyone["count"] == 2

    got = await client.get(f"/api/v1/people/{resident['id']}", headers=headers)
    assert got.json() == resident

    changed = await client.patch(
        f"/api/v1/people/{resident['id']}", json={"pgy_level": 3, "name": "Ada L."}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["pgy_level"], changed.json()["name"]) == (3, "Ada L.")
    # A resident who becomes faculty loses the PGY level.
    promoted = await client.patch(
        f"/api/v1/people/{resident['id']}", json={"type": "faculty"}, headers=headers
    )
    assert (promoted.json()["type"], promoted.json()["pgy_level"]) == ("faculty", None)

    deleted = await client.delete(f"/api/v1/people/{faculty['id']}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    gone = await client.get(f"/api/v1/people/{faculty['id']}", headers=headers)
    assert gone.status_code == 404, gone.text
    assert gone.json() == {"detail": f"Person {faculty['id']} not found"}


async def test_a_duplicate_email_in_the_organization_is_409(
    api: SchedulingApi, other_tenant: SchedulingApi
) -> None:
    await api.person("faculty", email="same@example.com")
    again = await api.client.post(
        "/api/v1/people",
        json={"name": "Twin", "email": "SAME@example.com", "type": "faculty"},
        headers=api.headers,
    )
    assert again.status_code == 409, again.text
    assert again.json() == {
        "detail": "A person with this e-mail already exists in the organization"
    }
    # Another organization may use the same address.
    elsewhere = await other_tenant.person("faculty", email="same@example.com")
    assert elsewhere["email"] == "same@example.com"


async def test_changing_an_email_to_a_taken_one_is_409(api: SchedulingApi) -> None:
    await api.person("faculty", email="taken@example.com")
    other = await api.person("faculty")
    response = await api.client.patch(
        f"/api/v1/people/{other['id']}", json={"email": "taken@example.com"}, headers=api.headers
    )
    assert response.status_code == 409, response.text
    assert "e-mail" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"type": "faculty", "pgy_level": 1}, "pgy_level is for residents only", id="pgy-faculty"
        ),
        pytest.param({"type": "resident", "pgy_level": 4}, "less than or equal to 3", id="pgy-4"),
        pytest.param(
            {"type": "resident", "pgy_level": 0}, "greater than or equal to 1", id="pgy-0"
        ),
        pytest.param({"type": "resident"}, "A resident needs a pgy_level", id="pgy-missing"),
        pytest.param({"type": "nurse"}, "'resident' or 'faculty'", id="unknown-type"),
        pytest.param({"type": "faculty", "email": "not-an-email"}, "email", id="bad-email"),
    ],
)
async def test_bad_people_are_422(api: SchedulingApi, body: dict[str, Any], message: str) -> None:
    payload = {"name": "X", "email": "x@example.com"} | body
    response = await api.client.post("/api/v1/people", json=payload, headers=api.headers)
    assert response.status_code == 422, response.text
    assert any(message in error["msg"] for error in response.json()["detail"]), response.json()


async def test_a_patch_making_faculty_with_a_level_is_422(api: SchedulingApi) -> None:
    faculty = await api.person("faculty")
    response = await api.client.patch(
        f"/api/v1/people/{faculty['id']}", json={"pgy_level": 2}, headers=api.headers
    )
    assert response.status_code == 422, response.text
    assert "residents only" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        pytest.param({"nickname": "Al"}, ["body", "nickname"], "Extra inputs", id="unknown"),
        pytest.param({"name": None}, ["body", "name"], "name cannot be null", id="null-name"),
    ],
)
async def test_a_patch_with_an_unknown_or_null_field_is_422(
    api: SchedulingApi, body: dict[str, Any], loc: list[str], message: str
) -> None:
    person = await api.person("faculty")
    response = await api.client.patch(
        f"/api/v1/people/{person['id']}", json=body, headers=api.headers
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (error["loc"], message in error["msg"]) == (loc, True), error


async def test_absences_are_recorded_and_checked(api: SchedulingApi) -> None:
    resident = await api.person()
    url = f"/api/v1/people/{resident['id']}/absences"
    created = await api.client.post(
        url,
        json={"start_date": "2027-03-02", "end_date": "2027-03-04", "kind": "vacation"},
        headers=api.headers,
    )
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in ("person_id", "start_date", "end_date", "kind")} == {
        "person_id": resident["id"],
        "start_date": "2027-03-02",
        "end_date": "2027-03-04",
        "kind": "vacation",
    }
    listed = (await api.client.get(url, headers=api.headers)).json()
    assert [a["id"] for a in listed["items"]] == [created.json()["id"]]
    backwards = await api.client.post(
        url, json={"start_date": "2027-03-04", "end_date": "2027-03-02"}, headers=api.headers
    )
    assert backwards.status_code == 422, backwards.text
    assert "end_date must be on or after start_date" in backwards.json()["detail"][0]["msg"]
    assert created.json()["conflicts"] == []
    assert created.json()["resolution"] is None


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        *(pytest.param(k, k, id=k) for k in ("vacation", "sick", "conference", "parental")),
        pytest.param("deployment", "deployment", id="deployment"),
        pytest.param("other", "other", id="other"),
        pytest.param("leave", "other", id="legacy-leave"),
        pytest.param(None, "other", id="default"),
        pytest.param(" Sick ", "sick", id="case-and-spaces"),
    ],
)
async def test_absence_kinds(api: SchedulingApi, given: str | None, stored: str) -> None:
    resident = await api.person()
    body = {"start_date": "2027-03-02", "end_date": "2027-03-02"}
    if given is not None:
        body["kind"] = given
    created = await api.client.post(
        f"/api/v1/people/{resident['id']}/absences", json=body, headers=api.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["kind"] == stored


async def test_an_unknown_absence_kind_is_422(api: SchedulingApi) -> None:
    resident = await api.person()
    refused = await api.client.post(
        f"/api/v1/people/{resident['id']}/absences",
        json={"start_date": "2027-03-02", "end_date": "2027-03-02", "kind": "holiday"},
        headers=api.headers,
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "kind"]


async def test_an_absence_over_assignments_lists_them_with_the_way_out(
    api: SchedulingApi,
) -> None:
    blocks = await api.blocks(date(2027, 3, 1), date(2027, 3, 3))
    ward = await api.rotation(name="Ward")
    ada = await api.person("resident", name="Ada", pgy_level=2)
    draft = await api.schedule(date(2027, 3, 1), date(2027, 3, 3))
    inside = [await api.assigned(draft, ada, block, ward) for block in blocks[2:5]]
    await api.assigned(draft, ada, blocks[0], ward)  # 1 March: before the absence
    created = await api.client.post(
        f"/api/v1/people/{ada['id']}/absences",
        json={"start_date": "2027-03-02", "end_date": "2027-03-03", "kind": "sick"},
        headers=api.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert [
        (c["assignment_id"], c["date"], c["time_of_day"], c["rotation_name"], c["schedule_status"])
        for c in body["conflicts"]
    ] == [
        (inside[0]["id"], "2027-03-02", "AM", "Ward", "draft"),
        (inside[1]["id"], "2027-03-02", "PM", "Ward", "draft"),
        (inside[2]["id"], "2027-03-03", "AM", "Ward", "draft"),
    ]
    assert body["resolution"] == (
        "Ada is assigned on 3 block(s) during the absence (2027-03-02 to 2027-03-03): hand "
        "each to someone free with POST /api/v1/swaps {assignment_id, to_person_id, reason}, "
        f"or regenerate POST /api/v1/schedules/{draft['id']}/generate"
    )
    # The absence is recorded all the same, and the validation now reports the clashes.
    report = (
        await api.client.get(f"/api/v1/schedules/{draft['id']}/validation", headers=api.headers)
    ).json()
    assert [v["rule"] for v in report["violations"]] == ["absence"] * 3


# --- blocks and rotations -----------------------------------------------------------------------


async def test_blocks_are_generated_once_and_listed_in_date_order(api: SchedulingApi) -> None:
    client, headers = api.client, api.headers
    first = await client.post(
        "/api/v1/blocks/generate",
        json={"start_date": "2027-03-01", "end_date": "2027-03-03"},
        headers=headers,
    )
    assert (first.status_code, first.json()) == (201, {"created": 6})
    again = await client.post(
        "/api/v1/blocks/generate",
        json={"start_date": "2027-03-02", "end_date": "2027-03-04"},
        headers=headers,
    )
    assert again.json() == {"created": 2}  # only 4 March is new
    listed = (
        await client.get(
            "/api/v1/blocks",
            params={"start_date": "2027-03-02", "end_date": "2027-03-03"},
            headers=headers,
        )
    ).json()
    assert [(b["date"], b["time_of_day"]) for b in listed["items"]] == [
        ("2027-03-02", "AM"),
        ("2027-03-02", "PM"),
        ("2027-03-03", "AM"),
        ("2027-03-03", "PM"),
    ]
    assert listed["count"] == 4
    everything = (await client.get("/api/v1/blocks", headers=headers)).json()
    assert everything["count"] == 8


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param("2027-03-02T00:00:00+00:00", ("2027-03-02", "AM"), id="midnight"),
        pytest.param("2027-03-02T11:59:59+00:00", ("2027-03-02", "AM"), id="before-noon"),
        pytest.param("2027-03-02T12:00:00+00:00", ("2027-03-02", "PM"), id="noon"),
        pytest.param("2027-03-02T23:30:00+00:00", ("2027-03-02", "PM"), id="late"),
        pytest.param("2027-03-02T01:00:00+05:00", ("2027-03-01", "PM"), id="offset-to-utc"),
    ],
)
async def test_the_current_block_is_the_one_of_now_in_utc(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    coordinator: User,
    moment: str,
    expected: tuple[str, str],
) -> None:
    # Not ticking: 11:59:59 must stay before noon however long the requests take.
    with freeze_time(moment, real_asyncio=True):
        api = SchedulingApi(client, await login_as(coordinator))
        await api.blocks(date(2027, 3, 1), date(2027, 3, 2))
        response = await client.get("/api/v1/blocks/current", headers=api.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["date"], response.json()["time_of_day"]) == expected


async def test_no_current_block_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, coordinator: User
) -> None:
    with freeze_time("2027-05-01T08:00:00Z", tick=True, real_asyncio=True):
        headers = await login_as(coordinator)
        response = await client.get("/api/v1/blocks/current", headers=headers)
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "No block for 2027-05-01 AM: generate blocks"}


async def test_rotations_are_created_and_listed(api: SchedulingApi) -> None:
    icu = await api.rotation(
        name="ICU", kind="icu", specialty="Critical care", min_residents=1, max_residents=2
    )
    assert {k: icu[k] for k in icu if k != "id"} == {
        "name": "ICU",
        "kind": "icu",
        "specialty": "Critical care",
        "min_residents": 1,
        "max_residents": 2,
        "requires_supervision": False,
        "hours_per_block": 6.0,
        "no_call_before": False,
    }
    listed = (await api.client.get("/api/v1/rotations", headers=api.headers)).json()
    assert [r["id"] for r in listed["items"]] == [icu["id"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"kind": "surgery"}, "'clinic', 'inpatient', 'icu'", id="unknown-kind"),
        pytest.param(
            {"min_residents": 3, "max_residents": 2}, "at least min_residents", id="min-over-max"
        ),
        pytest.param({"hours_per_block": 0}, "greater than 0", id="no-hours"),
    ],
)
async def test_bad_rotations_are_422(
    api: SchedulingApi, body: dict[str, Any], message: str
) -> None:
    payload = {"name": "R", "kind": "clinic"} | body
    response = await api.client.post("/api/v1/rotations", json=payload, headers=api.headers)
    assert response.status_code == 422, response.text
    assert any(message in error["msg"] for error in response.json()["detail"]), response.json()


# --- schedules and assignments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"start_date": "2027-03-10", "end_date": "2027-03-01"},
            "end_date must be on or after start_date",
            id="end-before-start",
        ),
        pytest.param(
            {"start_date": "2027-01-01", "end_date": "2028-06-01"},
            "at most 366 days",
            id="too-long",
        ),
        pytest.param({"start_date": "2027-02-30", "end_date": "2027-03-01"}, "date", id="no-date"),
    ],
)
async def test_bad_schedules_are_422(
    api: SchedulingApi, body: dict[str, Any], message: str
) -> None:
    response = await api.client.post(
        "/api/v1/schedules", json={"name": "S"} | body, headers=api.headers
    )
    assert response.status_code == 422, response.text
    assert any(message in error["msg"] for error in response.json()["detail"]), response.json()


async def test_a_schedule_starts_as_a_draft(api: SchedulingApi) -> None:
    schedule = await api.schedule(MONDAY, MONDAY + timedelta(days=6), name="March")
    assert {k: schedule[k] for k in ("name", "start_date", "end_date", "status")} == {
        "name": "March",
        "start_date": "2027-03-01",
        "end_date": "2027-03-07",
        "status": "draft",
    }
    assert (schedule["statistics"], schedule["error"], schedule["job_id"]) == (None, None, None)
    got = await api.client.get(f"/api/v1/schedules/{schedule['id']}", headers=api.headers)
    assert got.json() == schedule
    listed = (await api.client.get("/api/v1/schedules", headers=api.headers)).json()
    assert [s["id"] for s in listed["items"]] == [schedule["id"]]


async def test_manual_assignments_are_created_listed_and_deleted(api: SchedulingApi) -> None:
    client, headers = api.client, api.headers
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    rotation = await api.rotation()
    ada, bob = await api.person(), await api.person()
    first = await api.assigned(schedule, ada, blocks[0], rotation)
    assert first == {
        "id": first["id"],
        "schedule_id": schedule["id"],
        "person_id": ada["id"],
        "block_id": blocks[0]["id"],
        "rotation_id": rotation["id"],
        "role": "primary",
        "warnings": [],
    }
    await api.assigned(schedule, bob, blocks[1], rotation)
    url = f"/api/v1/schedules/{schedule['id']}/assignments"
    everything = (await client.get(url, headers=headers)).json()
    assert everything["count"] == 2
    only_ada = (await client.get(url, params={"person_id": ada["id"]}, headers=headers)).json()
    assert [a["id"] for a in only_ada["items"]] == [first["id"]]

    deleted = await client.delete(f"{url}/{first['id']}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    assert (await client.get(url, headers=headers)).json()["count"] == 1
    again = await client.delete(f"{url}/{first['id']}", headers=headers)
    assert again.status_code == 404, again.text
    assert again.json() == {"detail": f"Assignment {first['id']} not found"}


async def test_an_assignment_that_breaks_a_rule_comes_with_warnings(api: SchedulingApi) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    resident = await api.person()
    absent = await api.client.post(
        f"/api/v1/people/{resident['id']}/absences",
        json={"start_date": MONDAY.isoformat(), "end_date": MONDAY.isoformat()},
        headers=api.headers,
    )
    assert absent.status_code == 201, absent.text
    assert absent.json()["person_id"] == resident["id"]
    assert absent.json()["start_date"] == MONDAY.isoformat()
    created = await api.assigned(schedule, resident, blocks[0], await api.rotation())
    assert [(w["rule"], w["person_id"], w["block_id"]) for w in created["warnings"]] == [
        ("absence", resident["id"], blocks[0]["id"])
    ]
    assert created["warnings"][0]["severity"] in {"critical", "high", "medium", "low"}
    assert created["warnings"][0]["message"]


async def test_the_same_person_twice_in_one_block_is_409(api: SchedulingApi) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    resident, rotation = await api.person(), await api.rotation()
    await api.assigned(schedule, resident, blocks[0], rotation)
    again = await api.assign(schedule, resident, blocks[0], await api.rotation())
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "This person already has an assignment in this block"}


@pytest.mark.parametrize(
    ("person_type", "role", "message"),
    [
        pytest.param(
            "resident",
            "supervising",
            "A resident can only be assigned as primary",
            id="resident-supervising",
        ),
        pytest.param(
            "faculty",
            "primary",
            "A faculty can only be assigned as supervising",
            id="faculty-primary",
        ),
    ],
)
async def test_the_role_must_fit_the_person(
    api: SchedulingApi, person_type: str, role: str, message: str
) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    person = await api.person(person_type)
    response = await api.assign(schedule, person, blocks[0], await api.rotation(), role=role)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"loc": ["body", "role"], "msg": message, "type": "value_error"}
    ]


async def test_a_block_outside_the_schedule_is_422(api: SchedulingApi) -> None:
    blocks = await api.blocks(MONDAY, MONDAY + timedelta(days=1))
    schedule = await api.schedule(MONDAY, MONDAY)
    response = await api.assign(schedule, await api.person(), blocks[2], await api.rotation())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "block_id"]
    assert "outside the schedule's dates" in response.json()["detail"][0]["msg"]


async def test_validation_reports_violations_and_coverage(api: SchedulingApi) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    rotation = await api.rotation(min_residents=1, max_residents=2)
    url = f"/api/v1/schedules/{schedule['id']}/validation"
    empty = (await api.client.get(url, headers=api.headers)).json()
    assert empty["valid"] is False
    assert empty["coverage_rate"] == 0.0
    assert empty["total_violations"] == len(empty["violations"]) == 2
    assert {(v["rule"], v["block_id"]) for v in empty["violations"]} == {
        ("coverage", blocks[0]["id"]),
        ("coverage", blocks[1]["id"]),
    }
    assert set(empty["violations"][0]) == {"rule", "severity", "person_id", "block_id", "message"}
    for block in blocks:
        await api.assigned(schedule, await api.person(), block, rotation)
    full = (await api.client.get(url, headers=api.headers)).json()
    assert full == {"valid": True, "total_violations": 0, "violations": [], "coverage_rate": 1.0}


async def test_deleting_a_schedule_removes_its_assignments(
    api: SchedulingApi, client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule, kept = await api.schedule(MONDAY, MONDAY), await api.schedule(MONDAY, MONDAY)
    rotation, resident = await api.rotation(), await api.person()
    for block in blocks:
        await api.assigned(schedule, resident, block, rotation)
    await api.assigned(kept, resident, blocks[0], rotation)

    async def rows(schedule_id: str) -> int:
        query = select(func.count()).where(Assignment.schedule_id == uuid.UUID(schedule_id))
        return int((await db_session.execute(query)).scalar_one())

    assert await rows(schedule["id"]) == 2
    admin = await make_user(Role.admin, organization_id=(await _org_of(api, client)))
    response = await client.delete(
        f"/api/v1/schedules/{schedule['id']}", headers=await login_as(admin)
    )
    assert response.status_code == 204, response.text
    assert await rows(schedule["id"]) == 0  # the database's ON DELETE CASCADE
    assert await rows(kept["id"]) == 1
    gone = await client.get(f"/api/v1/schedules/{schedule['id']}", headers=api.headers)
    assert gone.status_code == 404, gone.text
    assert gone.json() == {"detail": f"Schedule {schedule['id']} not found"}


async def _org_of(api: SchedulingApi, client: httpx.AsyncClient) -> uuid.UUID:
    me = (await client.get("/api/v1/users/me", headers=api.headers)).json()
    return uuid.UUID(me["organization_id"])


# --- tenancy and permissions --------------------------------------------------------------------


async def test_another_tenants_objects_are_404(
    api: SchedulingApi, other_tenant: SchedulingApi
) -> None:
    blocks = await other_tenant.blocks(MONDAY, MONDAY)
    theirs = await other_tenant.schedule(MONDAY, MONDAY)
    their_person = await other_tenant.person()
    their_rotation = await other_tenant.rotation()
    client, headers = api.client, api.headers
    for url in (
        f"/api/v1/schedules/{theirs['id']}",
        f"/api/v1/schedules/{theirs['id']}/assignments",
        f"/api/v1/schedules/{theirs['id']}/validation",
        f"/api/v1/people/{their_person['id']}",
    ):
        response = await client.get(url, headers=headers)
        assert response.status_code == 404, url
        assert response.json()["detail"].endswith("not found")
    patched = await client.patch(
        f"/api/v1/people/{their_person['id']}", json={"name": "Mine"}, headers=headers
    )
    assert patched.status_code == 404, patched.text
    assert patched.json() == {"detail": f"Person {their_person['id']} not found"}
    # Their person, block or rotation cannot be put in my schedule either.
    mine = await api.schedule(MONDAY, MONDAY)
    smuggled = await api.assign(mine, their_person, blocks[0], their_rotation)
    assert smuggled.status_code == 404, smuggled.text
    assert smuggled.json() == {"detail": f"Person {their_person['id']} not found"}
    assert (await client.get("/api/v1/people", headers=headers)).json()["count"] == 0


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        pytest.param(Role.member, 403, id="member"),
        pytest.param(Role.reviewer, 403, id="reviewer"),
        pytest.param(Role.coordinator, 403, id="coordinator"),
        pytest.param(Role.admin, 204, id="admin"),
    ],
)
async def test_only_admins_delete_schedules(
    api: SchedulingApi,
    client: httpx.AsyncClient,
    login_as: LoginAs,
    role: Role,
    expected: int,
) -> None:
    schedule = await api.schedule(MONDAY, MONDAY)
    user = await make_user(role, organization_id=await _org_of(api, client))
    response = await client.delete(
        f"/api/v1/schedules/{schedule['id']}", headers=await login_as(user)
    )
    assert response.status_code == expected
    if expected == 403:
        assert response.json() == {"detail": "Missing required scope: schedule:admin"}
    still = await client.get(f"/api/v1/schedules/{schedule['id']}", headers=api.headers)
    assert still.status_code == (200 if expected == 403 else 404)
    if expected == 403:
        assert still.json()["id"] == schedule["id"]
    else:
        assert still.json() == {"detail": f"Schedule {schedule['id']} not found"}


@pytest.mark.parametrize(
    ("role", "can_write"),
    [
        pytest.param(Role.member, False, id="member"),
        pytest.param(Role.reviewer, False, id="reviewer"),
        pytest.param(Role.coordinator, True, id="coordinator"),
        pytest.param(Role.admin, True, id="admin"),
    ],
)
async def test_reading_needs_schedule_read_and_changing_schedule_write(
    client: httpx.AsyncClient, login_as: LoginAs, role: Role, can_write: bool
) -> None:
    headers = await login_as(await make_user(role))
    listed = await client.get("/api/v1/schedules", headers=headers)
    assert listed.json() == {"items": [], "count": 0}
    created = await client.post(
        "/api/v1/schedules",
        json={"name": "S", "start_date": "2027-03-01", "end_date": "2027-03-07"},
        headers=headers,
    )
    assert created.status_code == (201 if can_write else 403)
    if not can_write:
        assert created.json() == {"detail": "Missing required scope: schedule:write"}


async def test_without_schedule_read_nothing_is_shown(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member, scopes={"agent:read"})
    response = await client.get("/api/v1/people", headers=headers)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Missing required scope: schedule:read"}


async def test_generation_is_accepted_once_at_a_time(api: SchedulingApi) -> None:
    """No executor runs here, so the schedule stays `generating` after the first request."""
    await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    url = f"/api/v1/schedules/{schedule['id']}/generate"
    accepted = await api.client.post(url, json={"timeout_seconds": 5}, headers=api.headers)
    assert accepted.status_code == 202, accepted.text
    got = (await api.client.get(f"/api/v1/schedules/{schedule['id']}", headers=api.headers)).json()
    assert got["status"] == "generating"
    assert got["job_id"] == accepted.json()["job_id"]
    assert got["progress"] == {"phase": "queued"}
    job = (await api.client.get(f"/api/v1/jobs/{got['job_id']}", headers=api.headers)).json()
    assert job["task"] == "schedule.generate"
    assert job["payload"] == {"schedule_id": schedule["id"], "timeout_seconds": 5}

    again = await api.client.post(url, headers=api.headers)
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "Schedule is generating; it cannot be generated now"}
    # A manual change while it is being generated would be overwritten: refused.
    blocks = await api.blocks(MONDAY, MONDAY)
    busy = await api.assign(schedule, await api.person(), blocks[0], await api.rotation())
    assert busy.status_code == 409, busy.text
    assert busy.json() == {"detail": "Schedule is being generated; wait until it is done"}


@pytest.mark.parametrize(
    ("body", "status_code"),
    [
        pytest.param({"timeout_seconds": 0}, 422, id="zero-timeout"),
        pytest.param({"timeout_seconds": 601}, 422, id="timeout-too-long"),
    ],
)
async def test_bad_generation_requests_are_422(
    api: SchedulingApi, body: dict[str, Any], status_code: int
) -> None:
    await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    response = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", json=body, headers=api.headers
    )
    assert response.status_code == status_code
    assert response.json()["detail"][0]["loc"] == ["body", "timeout_seconds"]


async def test_a_schedule_without_blocks_cannot_be_generated(api: SchedulingApi) -> None:
    schedule = await api.schedule(MONDAY, MONDAY)
    response = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
    )
    assert response.status_code == 422, response.text
    assert "no blocks" in response.json()["detail"][0]["msg"]
    got = (await api.client.get(f"/api/v1/schedules/{schedule['id']}", headers=api.headers)).json()
    assert got["status"] == "draft"


async def test_only_a_generated_schedule_is_published(api: SchedulingApi) -> None:
    schedule = await api.schedule(MONDAY, MONDAY)
    response = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/publish", headers=api.headers
    )
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "Schedule is draft; only a generated one is published"}


async def test_dates_far_outside_any_schedule_are_422(api: SchedulingApi) -> None:
    response = await api.client.post(
        "/api/v1/schedules",
        json={"name": "Ancient", "start_date": "0001-01-01", "end_date": "0001-01-02"},
        headers=api.headers,
    )
    assert response.status_code == 422, response.text
    assert "Dates must lie between 1900-01-01 and 2999-12-31" in response.json()["detail"][0]["msg"]


async def test_a_person_with_assignments_keeps_their_type(api: SchedulingApi) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    resident = await api.person()
    await api.assigned(
        await api.schedule(MONDAY, MONDAY), resident, blocks[0], await api.rotation()
    )
    response = await api.client.patch(
        f"/api/v1/people/{resident['id']}", json={"type": "faculty"}, headers=api.headers
    )
    assert response.status_code == 409, response.text
    assert response.json() == {
        "detail": "This person has assignments; remove them before changing the type"
    }
