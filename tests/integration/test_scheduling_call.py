"""Call periods and moonlighting through the API (issue 15), on SQLite and PostgreSQL: stored,
listed, deleted, answered with warnings, counted by validation, read-only once published."""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import User
from tandem.identity.scopes import Role
from tests.conftest import LoginAs
from tests.factories import make_user
from tests.integration.scheduling_setup import SchedulingApi
from tests.integration.test_scheduling_published import publish

pytestmark = pytest.mark.anyio

MONDAY = date(2027, 3, 1)
SUNDAY_4 = MONDAY + timedelta(days=27)


@pytest.fixture
async def api(client: httpx.AsyncClient, login_as: LoginAs) -> SchedulingApi:
    coordinator: User = await make_user(Role.coordinator)
    return SchedulingApi(client, await login_as(coordinator))


def _call(
    api: SchedulingApi, schedule: dict[str, Any], person: dict[str, Any], **fields: Any
) -> Any:
    body = {"person_id": person["id"]} | fields
    return api.client.post(
        f"/api/v1/schedules/{schedule['id']}/calls", json=body, headers=api.headers
    )


async def _rules(api: SchedulingApi, schedule: dict[str, Any]) -> list[str]:
    response = await api.client.get(
        f"/api/v1/schedules/{schedule['id']}/validation", headers=api.headers
    )
    assert response.status_code == 200, response.text
    return [v["rule"] for v in response.json()["violations"]]


async def test_a_call_is_stored_listed_checked_and_deleted(api: SchedulingApi) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person(name="Ada")
    # 24 hours of in-house call + 5: one hour beyond the transition allowance.
    response = await _call(
        api, schedule, ada, kind="in_house", start="2027-03-02T07:00", end="2027-03-03T12:00"
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in ("schedule_id", "person_id", "kind", "start", "end")} == {
        "schedule_id": schedule["id"],
        "person_id": ada["id"],
        "kind": "in_house",
        "start": "2027-03-02T07:00:00",
        "end": "2027-03-03T12:00:00",
    }
    assert created["worked_hours"] is None
    assert [w["rule"] for w in created["warnings"]] == ["continuous_duty"]
    assert "end it by 2027-03-03 11:00" in created["warnings"][0]["message"]
    assert await _rules(api, schedule) == ["continuous_duty"]

    url = f"/api/v1/schedules/{schedule['id']}/calls"
    listed = (await api.client.get(url, headers=api.headers)).json()
    assert [c["id"] for c in listed["items"]] == [created["id"]]
    mine = await api.client.get(url, params={"person_id": ada["id"]}, headers=api.headers)
    assert mine.json()["count"] == 1

    deleted = await api.client.delete(f"{url}/{created['id']}", headers=api.headers)
    assert deleted.status_code == 204, deleted.text
    assert await _rules(api, schedule) == []
    again = await api.client.delete(f"{url}/{created['id']}", headers=api.headers)
    assert again.status_code == 404, again.text
    assert again.json() == {"detail": f"Call {created['id']} not found"}


async def test_home_call_counts_only_the_hours_worked(api: SchedulingApi) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person(name="Ada")
    # Home call every night, far more often than every third night and 24 h long: as home
    # call none of it is in-house duty, and only the recorded 2 hours a night count.
    for day in range(0, 27, 2):
        start = MONDAY + timedelta(days=day)
        response = await _call(
            api,
            schedule,
            ada,
            kind="home",
            start=f"{start}T07:00",
            end=f"{start + timedelta(days=1)}T07:00",
            worked_hours=2,
        )
        assert response.status_code == 201, response.text
        assert response.json()["warnings"] == []
    assert await _rules(api, schedule) == []


async def test_the_tenth_call_in_28_days_breaks_call_frequency(api: SchedulingApi) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person(name="Ada")
    warnings = []
    for night in range(0, 28, 3):  # every third night: the 1st to the 28th day hold 10
        start = MONDAY + timedelta(days=night)
        response = await _call(
            api, schedule, ada, start=f"{start}T19:00", end=f"{start + timedelta(days=1)}T07:00"
        )
        assert response.status_code == 201, response.text
        warnings.append([w["rule"] for w in response.json()["warnings"]])
    assert warnings == [[]] * 9 + [["call_frequency"]]
    assert await _rules(api, schedule) == ["call_frequency"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "2027-03-02T19:00", "end": "2027-03-02T18:00"}, "end must be after start"),
        ({"start": "2027-03-02T19:00+01:00", "end": "2027-03-03T07:00"}, "without an offset"),
        ({"start": "2027-03-02T07:00", "end": "2027-03-04T07:00"}, "at most 36 hours"),
        (
            {"start": "2027-03-02T19:00", "end": "2027-03-03T07:00", "worked_hours": 3},
            "worked_hours is for home call",
        ),
        (
            {"kind": "home", "start": "2027-03-02T19:00", "end": "2027-03-03T07:00"}
            | {"worked_hours": 13},
            "cannot exceed the call's length",
        ),
        ({"kind": "night", "start": "2027-03-02T19:00", "end": "2027-03-03T07:00"}, "in_house"),
        ({"start": "2027-04-02T19:00", "end": "2027-04-03T07:00"}, "outside the schedule's dates"),
    ],
)
async def test_bad_calls_are_422(api: SchedulingApi, fields: dict[str, Any], message: str) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    response = await _call(api, schedule, await api.person(), **fields)
    assert response.status_code == 422, response.text
    assert message in response.text


async def test_a_published_schedules_calls_are_read_only(
    api: SchedulingApi, db_session: AsyncSession
) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person()
    kept = await _call(api, schedule, ada, start="2027-03-02T19:00", end="2027-03-03T07:00")
    await publish(db_session, schedule["id"])
    added = await _call(api, schedule, ada, start="2027-03-05T19:00", end="2027-03-06T07:00")
    assert added.status_code == 409, added.text
    assert added.json() == {"detail": "Schedule is published; change it through a swap"}
    removed = await api.client.delete(
        f"/api/v1/schedules/{schedule['id']}/calls/{kept.json()['id']}", headers=api.headers
    )
    assert removed.status_code == 409, removed.text
    assert removed.json() == {"detail": "Schedule is published; change it through a swap"}


async def test_another_tenants_calls_and_moonlighting_are_404(
    api: SchedulingApi, client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    other = SchedulingApi(client, await login_as(await make_user(Role.admin)))
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person()
    call = await _call(api, schedule, ada, start="2027-03-02T19:00", end="2027-03-03T07:00")
    calls_url = f"/api/v1/schedules/{schedule['id']}/calls"
    schedule_missing = {"detail": f"Schedule {schedule['id']} not found"}
    person_missing = {"detail": f"Person {ada['id']} not found"}
    listed = await other.client.get(calls_url, headers=other.headers)
    assert (listed.status_code, listed.json()) == (404, schedule_missing)
    deleted = await other.client.delete(f"{calls_url}/{call.json()['id']}", headers=other.headers)
    assert (deleted.status_code, deleted.json()) == (404, schedule_missing)
    # Their own schedule naming our resident: the person is not theirs.
    theirs = await other.schedule(MONDAY, SUNDAY_4)
    response = await _call(other, theirs, ada, start="2027-03-02T19:00", end="2027-03-03T07:00")
    assert (response.status_code, response.json()) == (404, person_missing)
    moonlighting = f"/api/v1/people/{ada['id']}/moonlighting"
    body = {"week_start": "2027-03-01", "hours": 10, "kind": "external"}
    posted = await other.client.post(moonlighting, json=body, headers=other.headers)
    assert (posted.status_code, posted.json()) == (404, person_missing)
    read = await other.client.get(moonlighting, headers=other.headers)
    assert (read.status_code, read.json()) == (404, person_missing)
    # Nothing of theirs landed on our resident.
    ours = await api.client.get(moonlighting, headers=api.headers)
    assert ours.json()["items"] == []


async def test_changing_calls_and_moonlighting_needs_schedule_write(
    api: SchedulingApi, client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person()
    viewer = SchedulingApi(client, await login_as(await make_user(Role.member)))
    response = await _call(viewer, schedule, ada, start="2027-03-02T19:00", end="2027-03-03T07:00")
    missing = {"detail": "Missing required scope: schedule:write"}
    assert (response.status_code, response.json()) == (403, missing)
    moonlighting = await viewer.client.post(
        f"/api/v1/people/{ada['id']}/moonlighting",
        json={"week_start": "2027-03-01", "hours": 10, "kind": "external"},
        headers=viewer.headers,
    )
    assert (moonlighting.status_code, moonlighting.json()) == (403, missing)
    calls = await api.client.get(f"/api/v1/schedules/{schedule['id']}/calls", headers=api.headers)
    assert calls.json()["items"] == []


async def test_moonlighting_tips_a_resident_over_80_hours(api: SchedulingApi) -> None:
    blocks = await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person(name="Ada")
    long_days = await api.rotation(name="Long days", hours_per_block=10)
    # Weekdays of three weeks, AM and PM of 10 hours: 15 days x 20 h = 300 h in the 28 days
    # from 1 March, 75 a week: within the limit and below the 76-hour warning.
    for block in blocks:
        day = date.fromisoformat(block["date"])
        if day.weekday() < 5 and (day - MONDAY).days < 21:
            await api.assigned(schedule, ada, block, long_days)
    assert await _rules(api, schedule) == []

    url = f"/api/v1/people/{ada['id']}/moonlighting"
    # 16 external hours in the fourth week: 316 h, 79 a week: approaching, not over.
    first = await api.client.post(
        url, json={"week_start": "2027-03-22", "hours": 16, "kind": "external"}, headers=api.headers
    )
    assert first.status_code == 201, first.text
    assert {k: first.json()[k] for k in ("person_id", "week_start", "hours", "kind")} == {
        "person_id": ada["id"],
        "week_start": "2027-03-22",
        "hours": 16.0,
        "kind": "external",
    }
    assert await _rules(api, schedule) == ["80_hour_approaching"]
    # 5 internal hours more the same week: 321 h, one over the 320 allowed.
    second = await api.client.post(
        url, json={"week_start": "2027-03-22", "hours": 5, "kind": "internal"}, headers=api.headers
    )
    assert second.status_code == 201, second.text
    validation = await api.client.get(
        f"/api/v1/schedules/{schedule['id']}/validation", headers=api.headers
    )
    assert validation.json()["valid"] is False
    over = [v for v in validation.json()["violations"] if v["rule"] == "80_hour"]
    assert [v["person_id"] for v in over] == [ada["id"]]
    assert "321 hours" in over[0]["message"]

    twice = await api.client.post(
        url, json={"week_start": "2027-03-22", "hours": 1, "kind": "internal"}, headers=api.headers
    )
    assert twice.status_code == 409, twice.text
    assert "delete it first" in twice.json()["detail"]
    listed = (await api.client.get(url, headers=api.headers)).json()
    assert [(m["kind"], m["hours"]) for m in listed["items"]] == [
        ("external", 16.0),
        ("internal", 5.0),
    ]
    deleted = await api.client.delete(f"{url}/{second.json()['id']}", headers=api.headers)
    assert deleted.status_code == 204, deleted.text
    assert await _rules(api, schedule) == ["80_hour_approaching"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"week_start": "2027-03-22", "hours": 0, "kind": "external"}, "greater than 0"),
        ({"week_start": "2027-03-22", "hours": 169, "kind": "external"}, "less than or equal"),
        ({"week_start": "2027-03-22", "hours": 5, "kind": "other"}, "internal"),
    ],
)
async def test_bad_moonlighting_is_422(
    api: SchedulingApi, body: dict[str, Any], message: str
) -> None:
    person = await api.person()
    response = await api.client.post(
        f"/api/v1/people/{person['id']}/moonlighting", json=body, headers=api.headers
    )
    assert response.status_code == 422, response.text
    assert message in response.text


async def test_exports_parse_back_to_the_same_duties_and_calls(api: SchedulingApi) -> None:
    blocks = await api.blocks(MONDAY, MONDAY + timedelta(days=1))
    schedule = await api.schedule(MONDAY, MONDAY + timedelta(days=1), name="Call week")
    ward = await api.rotation(name="Ward")
    ada, bea = await api.person(name="Ada"), await api.person(name="Bea")
    duty = await api.assigned(schedule, ada, blocks[0], ward)
    in_house = await _call(api, schedule, ada, start="2027-03-01T19:00", end="2027-03-02T07:00")
    home = await _call(
        api,
        schedule,
        bea,
        kind="home",
        start="2027-03-02T17:00",
        end="2027-03-03T08:00",
        worked_hours=1.5,
    )
    assert in_house.status_code == home.status_code == 201

    url = f"/api/v1/schedules/{schedule['id']}"
    text = (await api.client.get(f"{url}/export.csv", headers=api.headers)).text
    rows = [
        (r["date"], r["time_of_day"], r["start"], r["end"], r["person"], r["rotation"], r["role"],
         r["assignment_id"])
        for r in csv.DictReader(io.StringIO(text))
    ]  # fmt: skip
    assert rows == [
        ("2027-03-01", "AM", "2027-03-01T06:00:00+00:00", "2027-03-01T12:00:00+00:00", "Ada",
         "Ward", "primary", duty["id"]),
        ("2027-03-01", "call", "2027-03-01T19:00:00", "2027-03-02T07:00:00", "Ada",
         "In-house call", "in_house", in_house.json()["id"]),
        ("2027-03-02", "call", "2027-03-02T17:00:00", "2027-03-03T08:00:00", "Bea", "Home call",
         "home", home.json()["id"]),
    ]  # fmt: skip

    ics = await api.client.get(
        f"{url}/export.ics", params={"person_id": ada["id"]}, headers=api.headers
    )
    events = Calendar.from_ical(ics.content).walk("VEVENT")
    assert [
        (str(e["uid"]), str(e["summary"]), e.decoded("dtstart"), e.decoded("dtend"))
        for e in events
    ] == [
        (f"{duty['id']}@tandem", "Ward: Ada (primary)",
         datetime(2027, 3, 1, 6, tzinfo=UTC), datetime(2027, 3, 1, 12, tzinfo=UTC)),
        (f"{in_house.json()['id']}@tandem", "In-house call: Ada",
         datetime(2027, 3, 1, 19), datetime(2027, 3, 2, 7)),
    ]  # fmt: skip
    whole = await api.client.get(f"{url}/export.ics", headers=api.headers)
    assert len(Calendar.from_ical(whole.content).walk("VEVENT")) == 3


async def test_a_swap_is_checked_against_the_stored_calls(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    api = SchedulingApi(client, await login_as(await make_user(Role.admin)))
    blocks = await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    ward = await api.rotation(name="Ward")
    ada, bob = await api.person(name="Ada"), await api.person(name="Bob")
    duty = await api.assigned(schedule, ada, blocks[0], ward)  # Monday 07:00-13:00
    # Bob's 27 hours of in-house call from 09:00: with Ada's morning, 29 hours in a row.
    call = await _call(api, schedule, bob, start="2027-03-01T09:00", end="2027-03-02T12:00")
    assert call.json()["warnings"] == []
    response = await api.client.post(
        "/api/v1/swaps",
        json={"assignment_id": duty["id"], "to_person_id": bob["id"], "reason": "Exam"},
        headers=api.headers,
    )
    assert response.status_code == 422, response.text
    assert [(v["rule"], v["person_id"]) for v in response.json()["violations"]] == [
        ("continuous_duty", bob["id"])
    ]
    # The same duty handed to Bob by hand is stored, with the same warning.
    own = await api.assigned(schedule, bob, blocks[0], ward)
    assert [w["rule"] for w in own["warnings"]] == ["continuous_duty"]


async def test_a_schedules_call_settings_and_holidays(api: SchedulingApi) -> None:
    body = {
        "name": "Winter",
        "start_date": "2027-12-20",
        "end_date": "2028-01-16",
        "call_per_night": 2,
        "call_start_hour": 7,
        "call_hours": 24,
        "holidays": ["2028-01-01", "2027-12-25", "2028-01-01"],
    }
    created = await api.client.post("/api/v1/schedules", json=body, headers=api.headers)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert (schedule["call_per_night"], schedule["call_start_hour"], schedule["call_hours"]) == (
        2,
        7,
        24.0,
    )
    assert schedule["holidays"] == ["2027-12-25", "2028-01-01"]
    plain = await api.schedule(MONDAY, SUNDAY_4)
    assert (plain["call_per_night"], plain["holidays"]) == (0, [])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"holidays": ["2027-02-28"]}, "within the schedule's dates"),
        ({"call_per_night": 1, "call_start_hour": 19, "call_hours": 13}, "end by 07:00"),
        ({"call_per_night": -1}, "greater than or equal to 0"),
    ],
)
async def test_bad_call_settings_are_422(
    api: SchedulingApi, fields: dict[str, Any], message: str
) -> None:
    body = {"name": "S", "start_date": "2027-03-01", "end_date": "2027-03-28"} | fields
    response = await api.client.post("/api/v1/schedules", json=body, headers=api.headers)
    assert response.status_code == 422, response.text
    assert message in response.text


async def test_a_call_during_an_absence_is_reported(api: SchedulingApi) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4)
    ada = await api.person(name="Ada")
    absent = await api.client.post(
        f"/api/v1/people/{ada['id']}/absences",
        json={"start_date": "2027-03-03", "end_date": "2027-03-05", "kind": "conference"},
        headers=api.headers,
    )
    assert absent.status_code == 201, absent.text
    assert (absent.json()["person_id"], absent.json()["kind"]) == (ada["id"], "conference")
    # The night before the absence: the call runs into its first morning.
    response = await _call(api, schedule, ada, start="2027-03-02T19:00", end="2027-03-03T07:00")
    assert [w["rule"] for w in response.json()["warnings"]] == ["absence"]
    assert "absent from 2027-03-03 to 2027-03-05" in response.json()["warnings"][0]["message"]
    # Ending at midnight before it: no clash.
    fine = await _call(api, schedule, ada, start="2027-03-02T12:00", end="2027-03-03T00:00")
    assert fine.json()["warnings"] == []


async def test_a_person_on_call_in_a_published_schedule_cannot_be_deleted(
    api: SchedulingApi, db_session: AsyncSession
) -> None:
    await api.blocks(MONDAY, SUNDAY_4)
    schedule = await api.schedule(MONDAY, SUNDAY_4, name="Spring")
    ada = await api.person(name="Ada")
    await _call(api, schedule, ada, start="2027-03-02T19:00", end="2027-03-03T07:00")
    await publish(db_session, schedule["id"])
    refused = await api.client.delete(f"/api/v1/people/{ada['id']}", headers=api.headers)
    assert refused.status_code == 409, refused.text
    assert "published schedule Spring" in refused.json()["detail"]
