"""The console's schedule pages and the schedule exports (API and console downloads): the
grid grouped by PGY then faculty, violations marked in their cells, Generate, manual
assignments, and a swap's rule check on its thread page."""

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.jobs.models import Job
from tandem.scheduling.models import Assignment, Schedule, ScheduleStatus
from tests.conftest import LoginAs
from tests.console_support import assert_console_page, browser, sign_in, signed_in
from tests.factories import make_user
from tests.integration.scheduling_setup import SchedulingApi

pytestmark = pytest.mark.anyio

MONDAY = date(2027, 3, 1)


@pytest.fixture
async def admin(db_session: AsyncSession) -> User:
    return await make_user(Role.admin)


@pytest.fixture
async def api(client: httpx.AsyncClient, login_as: LoginAs, admin: User) -> SchedulingApi:
    return SchedulingApi(client, await login_as(admin))


@pytest.fixture
async def setup(api: SchedulingApi) -> dict[str, Any]:
    """Two days; Ada (PGY-2) works Monday AM but is absent that day; Bea (PGY-1) Monday PM."""
    blocks = await api.blocks(MONDAY, MONDAY + timedelta(days=1))
    schedule = await api.schedule(MONDAY, MONDAY + timedelta(days=1), name="March week")
    clinic = await api.rotation(name="General Clinic")
    ada = await api.person("resident", name="Ada Senior", pgy_level=2)
    bea = await api.person("resident", name="Bea Junior", pgy_level=1)
    fay = await api.person("faculty", name="Fay Faculty")
    absent = await api.client.post(
        f"/api/v1/people/{ada['id']}/absences",
        json={"start_date": MONDAY.isoformat(), "end_date": MONDAY.isoformat(), "kind": "leave"},
        headers=api.headers,
    )
    assert absent.status_code == 201, absent.text
    ada_monday = await api.assigned(schedule, ada, blocks[0], clinic)
    await api.assigned(schedule, bea, blocks[1], clinic)
    return {
        "blocks": blocks,
        "schedule": schedule,
        "clinic": clinic,
        "ada": ada,
        "bea": bea,
        "fay": fay,
        "ada_monday": ada_monday,
    }


@pytest.fixture
async def as_admin(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with signed_in(app, admin) as signed:
        yield signed


def cell(html: str, person: dict[str, Any], block: dict[str, Any]) -> str:
    """The grid cell of `person` in `block` as "<class>|<content>" (the columns are AM and PM
    of each day from MONDAY; a cell with nothing in it has no class)."""
    row = re.search(rf'<tr data-person="{person["id"]}">(.*?)</tr>', html, re.DOTALL)
    assert row is not None, "no such row"
    cells = re.findall(r'<td(?: class="([^"]*)")?>(.*?)</td>', row.group(1))
    day = (date.fromisoformat(block["date"]) - MONDAY).days
    css, content = cells[day * 2 + (0 if block["time_of_day"] == "AM" else 1)]
    return f"{css}|{content}"


async def test_the_grid_groups_people_and_marks_violations_in_their_cells(
    as_admin: tuple[httpx.AsyncClient, str], setup: dict[str, Any]
) -> None:
    page, _ = as_admin
    schedule = setup["schedule"]
    response = await page.get(f"/ui/schedules/{schedule['id']}")
    assert response.status_code == 200, response.text
    assert_console_page(response)
    text = response.text
    # Residents by PGY, then faculty; one column per day with AM and PM.
    assert text.index("PGY-1") < text.index("Bea Junior") < text.index("PGY-2")
    assert text.index("PGY-2") < text.index("Ada Senior") < text.index("Faculty</th>")
    assert "Mon 01 Mar" in text
    assert "Tue 02 Mar" in text
    # Ada's absent Monday morning is marked in its cell, Bea's afternoon is clean.
    ada_cell = cell(text, setup["ada"], setup["blocks"][0])
    assert "sev-" in ada_cell.split("|")[0]
    assert "GC" in ada_cell
    assert "absence" in ada_cell
    assert cell(text, setup["bea"], setup["blocks"][1]) == "cell|GC"
    assert cell(text, setup["fay"], setup["blocks"][0]) == "|"
    assert "<strong>GC</strong> General Clinic" in text
    # ... and listed beside the grid.
    assert re.search(r"<strong>\w+</strong> absence · Ada Senior · 2027-03-01 AM", text)
    assert ">Generate<" in text
    assert ">Add assignment<" in text
    assert "/export.csv" in text
    assert "/export.ics" in text


async def test_a_member_reads_the_grid_without_the_controls(
    app: FastAPI, client: httpx.AsyncClient, admin: User, setup: dict[str, Any]
) -> None:
    member = await make_user(Role.member, organization_id=admin.organization_id)
    schedule = setup["schedule"]
    async with browser(app) as page:
        token = await sign_in(page, member.email)
        listed = await page.get("/ui/schedules")
        assert listed.status_code == 200, listed.text
        assert_console_page(listed)
        assert "March week" in listed.text
        shown = await page.get(f"/ui/schedules/{schedule['id']}")
        assert shown.status_code == 200, shown.text
        assert "Ada Senior" in shown.text
        assert ">Generate<" not in shown.text
        assert ">Add assignment<" not in shown.text
        refused = await page.post(
            f"/ui/schedules/{schedule['id']}/generate", data={"csrf_token": token}
        )
        assert refused.status_code == 403, refused.text
        assert "schedule:write" in refused.text


async def test_generate_starts_a_generation_job(
    as_admin: tuple[httpx.AsyncClient, str], setup: dict[str, Any], db_session: AsyncSession
) -> None:
    page, token = as_admin
    schedule_id = setup["schedule"]["id"]
    response = await page.post(f"/ui/schedules/{schedule_id}/generate", data={"csrf_token": token})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/ui/schedules/{schedule_id}?notice=generating"
    schedule = await db_session.scalar(
        select(Schedule).where(Schedule.id == uuid.UUID(schedule_id))
    )
    assert schedule is not None
    await db_session.refresh(schedule)
    assert schedule.status is ScheduleStatus.generating
    assert await db_session.get(Job, schedule.job_id) is not None
    shown = await page.get(response.headers["location"])
    assert "Generating…" in shown.text
    assert 'data-poll="1500"' in shown.text
    assert ">Generate<" not in shown.text
    assert ">Add assignment<" not in shown.text
    # Without its token the form is refused.
    assert (await page.post(f"/ui/schedules/{schedule_id}/generate")).status_code == 403


async def test_a_manual_assignment_that_breaks_a_rule_is_marked_in_its_cell(
    as_admin: tuple[httpx.AsyncClient, str], setup: dict[str, Any], db_session: AsyncSession
) -> None:
    page, token = as_admin
    schedule = setup["schedule"]
    before = await page.get(f"/ui/schedules/{schedule['id']}")
    assert cell(before.text, setup["bea"], setup["blocks"][0]) == "|"
    # Ada is absent on Monday: an afternoon duty that day breaks the absence rule.
    response = await page.post(
        f"/ui/schedules/{schedule['id']}/assignments",
        data={
            "csrf_token": token,
            "person_id": setup["ada"]["id"],
            "block_id": setup["blocks"][1]["id"],
            "rotation_id": setup["clinic"]["id"],
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith("?notice=assigned")
    rows = (
        await db_session.scalars(
            select(Assignment).where(
                Assignment.schedule_id == uuid.UUID(schedule["id"]),
                Assignment.person_id == uuid.UUID(setup["ada"]["id"]),
            )
        )
    ).all()
    assert len(rows) == 2
    shown = await page.get(response.headers["location"])
    marked = cell(shown.text, setup["ada"], setup["blocks"][1])
    assert "sev-" in marked.split("|")[0]
    assert "absence" in marked


async def test_exports_as_csv_and_icalendar_through_the_api_and_the_console(
    as_admin: tuple[httpx.AsyncClient, str], api: SchedulingApi, setup: dict[str, Any]
) -> None:
    page, _ = as_admin
    schedule_id = setup["schedule"]["id"]
    from_api = await api.client.get(
        f"/api/v1/schedules/{schedule_id}/export.csv", headers=api.headers
    )
    assert from_api.status_code == 200, from_api.text
    assert from_api.headers["content-type"].startswith("text/csv")
    assert 'filename="march-week-2027-03-01.csv"' in from_api.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(from_api.text)))
    assert [(r["date"], r["time_of_day"], r["person"], r["rotation"]) for r in rows] == [
        ("2027-03-01", "AM", "Ada Senior", "General Clinic"),
        ("2027-03-01", "PM", "Bea Junior", "General Clinic"),
    ]
    assert rows[0]["start"] == "2027-03-01T06:00:00+00:00"
    assert rows[1]["end"] == "2027-03-01T18:00:00+00:00"
    from_console = await page.get(f"/ui/schedules/{schedule_id}/export.csv")
    assert from_console.text == from_api.text

    ics = await page.get(
        f"/ui/schedules/{schedule_id}/export.ics", params={"person_id": setup["bea"]["id"]}
    )
    assert ics.headers["content-type"].startswith("text/calendar")
    events = Calendar.from_ical(ics.content).walk("VEVENT")
    assert [str(e["summary"]) for e in events] == ["General Clinic: Bea Junior (primary)"]
    assert events[0].decoded("dtstart").isoformat() == "2027-03-01T12:00:00+00:00"
    whole = await api.client.get(f"/api/v1/schedules/{schedule_id}/export.ics", headers=api.headers)
    assert len(Calendar.from_ical(whole.content).walk("VEVENT")) == 2


async def test_another_organizations_schedule_is_a_404(
    as_admin: tuple[httpx.AsyncClient, str], client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    page, token = as_admin
    stranger = await make_user(Role.admin)
    stranger_headers = await login_as(stranger)
    theirs = await SchedulingApi(client, stranger_headers).schedule(MONDAY, MONDAY)
    not_found = f"Schedule {theirs['id']} not found"
    for path in ("", "/export.csv", "/export.ics"):
        response = await page.get(f"/ui/schedules/{theirs['id']}{path}")
        assert response.status_code == 404, path
        assert not_found in response.text, path
    generate = await page.post(f"/ui/schedules/{theirs['id']}/generate", data={"csrf_token": token})
    assert generate.status_code == 404, generate.text
    assert not_found in generate.text
    api_headers = await login_as(await make_user(Role.admin))
    exported = await client.get(f"/api/v1/schedules/{theirs['id']}/export.csv", headers=api_headers)
    assert (exported.status_code, exported.json()) == (404, {"detail": not_found})
    # Their schedule was not generated by our request.
    mine = await client.get(f"/api/v1/schedules/{theirs['id']}", headers=stranger_headers)
    assert mine.json()["status"] == "draft"


async def test_a_swap_thread_shows_who_gives_what_and_the_rule_check_now(
    as_admin: tuple[httpx.AsyncClient, str], api: SchedulingApi, setup: dict[str, Any]
) -> None:
    page, token = as_admin
    requested = await api.client.post(
        "/api/v1/swaps",
        json={
            "assignment_id": setup["ada_monday"]["id"],
            "to_person_id": setup["bea"]["id"],
            "reason": "Ada is on leave",
        },
        headers=api.headers,
    )
    assert requested.status_code == 201, requested.text
    thread_id = requested.json()["thread_id"]
    inbox = await page.get("/ui/inbox", params={"kind": "swap"})
    assert f"/ui/threads/{thread_id}" in inbox.text
    shown = await page.get(f"/ui/threads/{thread_id}")
    assert shown.status_code == 200, shown.text
    assert "Ada Senior hands General Clinic (primary) on 2027-03-01 AM to Bea Junior" in shown.text
    assert "Rule check as the schedule stands now" in shown.text
    assert "Keeps every rule." in shown.text
    assert ">Approve<" in shown.text
    assert ">Send back<" not in shown.text
    # Bea gets a clashing Monday-morning duty meanwhile: the check now says so.
    await api.assigned(setup["schedule"], setup["bea"], setup["blocks"][0], setup["clinic"])
    rechecked = await page.get(f"/ui/threads/{thread_id}")
    assert "Keeps every rule." not in rechecked.text
    assert "double_booking" in rechecked.text
    # Approving it anyway: the service checks again and cannot carry it out.
    approved = await page.post(
        f"/ui/threads/{thread_id}/decision",
        data={"csrf_token": token, "decision": "approve", "revision": "1"},
    )
    assert approved.headers["location"].endswith("?notice=not-carried-out")
    after = await page.get(approved.headers["location"])
    assert "could not be carried out" in after.text
    assert "the swap no longer holds" in after.text
    assert "badge-failed" in after.text
    assert ">Approve<" not in after.text


async def test_the_grid_shows_who_is_on_call_each_night(
    as_admin: tuple[httpx.AsyncClient, str], api: SchedulingApi, setup: dict[str, Any]
) -> None:
    page, _ = as_admin
    schedule = setup["schedule"]
    without = await page.get(f"/ui/schedules/{schedule['id']}")
    assert "data-call" not in without.text  # no call, no call row
    called = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/calls",
        json={"person_id": setup["bea"]["id"], "start": "2027-03-02T19:00",
              "end": "2027-03-03T07:00"},
        headers=api.headers,
    )  # fmt: skip
    assert called.status_code == 201, called.text
    response = await page.get(f"/ui/schedules/{schedule['id']}")
    row = re.search(r"<tr data-call>(.*?)</tr>", response.text, re.DOTALL)
    assert row is not None
    nights = re.findall(r'<td colspan="2" class="cell">(.*?)</td>', row.group(1))
    assert nights == ["", "Bea Junior"]  # Monday, Tuesday


async def test_the_statistics_show_per_person_totals_as_a_table(
    as_admin: tuple[httpx.AsyncClient, str], setup: dict[str, Any], db_session: AsyncSession
) -> None:
    page, _ = as_admin
    schedule_id = uuid.UUID(setup["schedule"]["id"])
    row = {"blocks": 3, "weekend_blocks": 1, "duty_hours": 30.0, "calls": 2, "weekend_calls": 1}
    statistics = {
        "status": "optimal",
        "totals": {setup["bea"]["id"]: {"name": "Bea Junior", **row, "holiday_calls": 0}},
    }
    schedule = await db_session.get(Schedule, schedule_id)
    assert schedule is not None
    schedule.statistics = statistics
    await db_session.flush()
    response = await page.get(f"/ui/schedules/{schedule_id}")
    table = re.search(r'<table class="totals">(.*?)</table>', response.text, re.DOTALL)
    assert table is not None
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", table.group(1).split("<tbody>")[1])
    assert cells == ["Bea Junior", "3", "1", "30.0", "2", "1"]
    assert "<dt>totals</dt>" not in response.text
