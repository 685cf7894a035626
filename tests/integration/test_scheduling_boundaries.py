"""Settled duty on both sides of a schedule's period (issue 15's defect), on SQLite and
PostgreSQL: generation, validation, manual-assignment warnings and swaps all see the duty of
the other generated or published schedules in the 27 days before the start AND after the end.

The scenario: one resident per block; X, Y and Z; Y and Z away 1-6 February 2027, so X works
1-6 February. January (4-31) is scheduled after February, with Y away on 31 January too.
"""

from datetime import date
from typing import Any

import pytest

from tests.integration.scheduling_setup import SchedulingApi
from tests.integration.test_scheduling_generation import WaitUntil, _finished

pytestmark = pytest.mark.anyio

JAN_4, JAN_31 = date(2027, 1, 4), date(2027, 1, 31)
FEB_1, FEB_6, FEB_28 = date(2027, 2, 1), date(2027, 2, 6), date(2027, 2, 28)


async def _absent(api: SchedulingApi, person: dict[str, Any], start: date, end: date) -> None:
    response = await api.client.post(
        f"/api/v1/people/{person['id']}/absences",
        json={"start_date": start.isoformat(), "end_date": end.isoformat(), "kind": "vacation"},
        headers=api.headers,
    )
    assert response.status_code == 201, response.text


async def _generate(api: SchedulingApi, schedule: dict[str, Any], wait_until: WaitUntil) -> None:
    response = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate",
        json={"timeout_seconds": 30},
        headers=api.headers,
    )
    assert response.status_code == 202, response.text
    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["status"] == "generated", generated["error"]


async def _assignments(api: SchedulingApi, schedule: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"/api/v1/schedules/{schedule['id']}/assignments"
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await api.client.get(
            url, params={"limit": 200, "offset": offset}, headers=api.headers
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        if len(items) >= page.json()["count"]:
            return items
        offset = len(items)


async def _validation(api: SchedulingApi, schedule: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.get(
        f"/api/v1/schedules/{schedule['id']}/validation", headers=api.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
async def scenario(live: SchedulingApi, wait_until: WaitUntil) -> dict[str, Any]:
    api = live
    blocks = await api.blocks(JAN_4, FEB_28)
    rotation = await api.rotation(name="Ward", min_residents=1, max_residents=1)
    x = await api.person("resident", name="X", pgy_level=2)
    y = await api.person("resident", name="Y", pgy_level=2)
    z = await api.person("resident", name="Z", pgy_level=2)
    for person in (y, z):
        await _absent(api, person, FEB_1, FEB_6)
    february = await api.schedule(FEB_1, FEB_28, name="February")
    await _generate(api, february, wait_until)
    by_id = {block["id"]: block for block in blocks}
    first_days = [
        a for a in await _assignments(api, february) if by_id[a["block_id"]]["date"] <= "2027-02-06"
    ]
    assert {a["person_id"] for a in first_days} == {x["id"]}
    assert len(first_days) == 12
    await _absent(api, y, JAN_31, JAN_31)
    january = await api.schedule(JAN_4, JAN_31, name="January")
    return {
        "blocks": blocks,
        "by_date": {(b["date"], b["time_of_day"]): b for b in blocks},
        "by_id": by_id,
        "rotation": rotation,
        "x": x,
        "y": y,
        "z": z,
        "january": january,
        "february": february,
    }


async def test_generation_leaves_a_day_off_before_the_next_schedules_duty(
    live: SchedulingApi, scenario: dict[str, Any], wait_until: WaitUntil
) -> None:
    api = live
    await _generate(api, scenario["january"], wait_until)
    on_31 = [
        a
        for a in await _assignments(api, scenario["january"])
        if scenario["by_id"][a["block_id"]]["date"] == JAN_31.isoformat()
    ]
    assert {a["person_id"] for a in on_31} == {scenario["z"]["id"]}
    for schedule in ("january", "february"):
        report = await _validation(api, scenario[schedule])
        assert report["violations"] == [], schedule
        assert report["valid"] is True


async def test_validation_sees_the_duty_after_the_period(
    live: SchedulingApi, scenario: dict[str, Any]
) -> None:
    api = live
    ward, x = scenario["rotation"], scenario["x"]
    block = scenario["by_date"][(JAN_31.isoformat(), "AM")]
    created = await api.assigned(scenario["january"], x, block, ward)
    expected = (
        "X: 7 duty days in a row from 2027-01-31 to 2027-02-06 (at most 6): a day off is "
        "needed by 2027-02-06"
    )
    assert [(w["rule"], w["message"], w["person_id"]) for w in created["warnings"]] == [
        ("1_in_7", expected, x["id"])
    ]
    report = await _validation(api, scenario["january"])
    assert [
        (v["rule"], v["message"], v["person_id"])
        for v in report["violations"]
        if v["rule"] != "coverage"  # January is not generated here: most blocks are empty
    ] == [("1_in_7", expected, x["id"])]
    assert report["valid"] is False


async def test_a_swap_into_a_run_across_the_end_is_refused(
    live: SchedulingApi, scenario: dict[str, Any]
) -> None:
    api = live
    ward, x, z = scenario["rotation"], scenario["x"], scenario["z"]
    block = scenario["by_date"][(JAN_31.isoformat(), "AM")]
    duty = await api.assigned(scenario["january"], z, block, ward)
    response = await api.client.post(
        "/api/v1/swaps",
        json={"assignment_id": duty["id"], "to_person_id": x["id"], "reason": "Trade"},
        headers=api.headers,
    )
    assert response.status_code == 422, response.text
    assert [(v["rule"], v["person_id"]) for v in response.json()["violations"]] == [
        ("1_in_7", x["id"])
    ]
    pending = (await api.client.get("/api/hitl/pending", headers=api.headers)).json()
    assert pending["count"] == 0


async def test_a_call_into_an_absence_after_the_period_is_seen(
    live: SchedulingApi, scenario: dict[str, Any]
) -> None:
    # Z is away 1-6 February, just after January: a call on 31 January ends in that absence.
    api = live
    response = await api.client.post(
        f"/api/v1/schedules/{scenario['january']['id']}/calls",
        json={"person_id": scenario["z"]["id"], "start": "2027-01-31T19:00",
              "end": "2027-02-01T07:00"},
        headers=api.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    expected = (
        "Z is absent from 2027-02-01 to 2027-02-06 but on in_house call from 2027-01-31 19:00 "
        "to 2027-02-01 07:00: give the call to someone free then or remove it"
    )
    assert [(w["rule"], w["message"]) for w in response.json()["warnings"]] == [
        ("absence", expected)
    ]
    report = await _validation(api, scenario["january"])
    assert ("absence", expected) in [(v["rule"], v["message"]) for v in report["violations"]]
    assert report["valid"] is False
