"""Generation with call through the API (issue 15), on SQLite and PostgreSQL: every night's
in-house call is stored with the schedule, the result validates, the per-person totals are
in the statistics, and the calls of earlier schedules in the academic year carry over."""

from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest

from tests.integration.scheduling_setup import SchedulingApi
from tests.integration.test_scheduling_boundaries import _generate, _validation
from tests.integration.test_scheduling_generation import WaitUntil

pytestmark = pytest.mark.anyio

MONDAY = date(2027, 3, 1)
WEEKS = 2


async def _schedule(api: SchedulingApi, start: date, name: str) -> dict[str, Any]:
    end = start + timedelta(days=7 * WEEKS - 1)
    body = {
        "name": name,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "call_per_night": 1,
        "call_start_hour": 17,
        "call_hours": 14,
    }
    response = await api.client.post("/api/v1/schedules", json=body, headers=api.headers)
    assert response.status_code == 201, response.text
    assert response.json()["call_per_night"] == 1
    return dict(response.json())


async def _calls(api: SchedulingApi, schedule: dict[str, Any]) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"/api/v1/schedules/{schedule['id']}/calls", params={"limit": 200}, headers=api.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_generation_assigns_nightly_call_and_carries_counts_over_the_year(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    api = live
    await api.blocks(MONDAY, MONDAY + timedelta(days=14 * WEEKS))
    await api.rotation(name="Ward", min_residents=1, max_residents=3, no_call_before=True)
    residents = [await api.person("resident", name=f"R{i}", pgy_level=2) for i in range(5)]

    first = await _schedule(api, MONDAY, "First")
    # A hand-made call is replaced by the generation (it is judged without it).
    manual = await api.client.post(
        f"/api/v1/schedules/{first['id']}/calls",
        json={"person_id": residents[0]["id"], "start": "2027-03-01T07:00",
              "end": "2027-03-02T07:00"},
        headers=api.headers,
    )  # fmt: skip
    assert manual.status_code == 201, manual.text
    await _generate(api, first, wait_until)
    calls = await _calls(api, first)
    nights = Counter(c["start"][:10] for c in calls)
    assert nights == {(MONDAY + timedelta(days=i)).isoformat(): 1 for i in range(7 * WEEKS)}
    assert all(c["start"].endswith("T17:00:00") and c["end"].endswith("T07:00:00")
               for c in calls)  # fmt: skip
    assert manual.json()["id"] not in {c["id"] for c in calls}
    report = await _validation(api, first)
    assert report["valid"], report["violations"][:3]

    got = await api.client.get(f"/api/v1/schedules/{first['id']}", headers=api.headers)
    totals = got.json()["statistics"]["totals"]
    per_person = Counter(c["person_id"] for c in calls)
    for person in residents:
        row = totals[person["id"]]
        assert row["calls"] == per_person[person["id"]]
        assert row["calls_in_academic_year"] == row["calls"]
        assert row["duty_hours"] >= 14 * row["calls"]
    # 14 calls among 5 residents: 2 or 3 each.
    assert sorted(per_person.values()) == [2, 3, 3, 3, 3]

    # The next schedule of the same academic year starts from those counts: whoever had
    # 2 calls is first in line, and the year's totals stay within one of each other.
    second = await _schedule(api, MONDAY + timedelta(days=7 * WEEKS), "Second")
    await _generate(api, second, wait_until)
    later = await _calls(api, second)
    year = per_person + Counter(c["person_id"] for c in later)
    assert max(year.values()) - min(year.values()) <= 1, year
    stats = (await api.client.get(f"/api/v1/schedules/{second['id']}", headers=api.headers)).json()[
        "statistics"
    ]["totals"]
    assert {p: row["calls_in_academic_year"] for p, row in stats.items()} == {
        p["id"]: year[p["id"]] for p in residents
    }
    report = await _validation(api, second)
    assert report["valid"], report["violations"][:3]


async def test_a_schedule_of_call_only_is_generated_and_stored(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    api = live
    await api.blocks(MONDAY, MONDAY + timedelta(days=2))
    for i in range(3):
        await api.person("resident", name=f"C{i}", pgy_level=1)
    body = {
        "name": "Nights",
        "start_date": MONDAY.isoformat(),
        "end_date": (MONDAY + timedelta(days=2)).isoformat(),
        "call_per_night": 1,
    }
    response = await api.client.post("/api/v1/schedules", json=body, headers=api.headers)
    assert response.status_code == 201, response.text
    schedule = response.json()
    await _generate(api, schedule, wait_until)  # no rotation needs anyone: call only
    calls = await _calls(api, schedule)
    assert sorted(c["start"] for c in calls) == [
        "2027-03-01T19:00:00",
        "2027-03-02T19:00:00",
        "2027-03-03T19:00:00",
    ]
    assert len({c["person_id"] for c in calls}) == 3  # one each: fair
