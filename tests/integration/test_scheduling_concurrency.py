"""Manual assignments sent at the same time, each request on its own connection with real
commits: the database's unique constraint decides, on SQLite and PostgreSQL."""

from collections.abc import AsyncIterator, Awaitable
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import func, select

from tandem.app import create_app
from tandem.scheduling.models import Assignment
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.integration.scheduling_setup import SchedulingApi

pytestmark = pytest.mark.anyio

NO_LONGER_HOLDS = "Approved, but it cannot be carried out: the swap no longer holds: "

MONDAY = date(2027, 3, 1)
AT_ONCE = 4


@pytest.fixture
async def live(committed_db: CommittedDatabase, tmp_path: Path) -> AsyncIterator[SchedulingApi]:
    settings = Settings(
        _env_file=None,
        database_url=committed_db.url,
        data_dir=tmp_path,
        worker_enabled=False,
        rate_limit_register="1000/minute",
    )
    async with running(create_app(settings)) as client:
        body = {"email": "race@example.com", "password": "a long enough password", "full_name": "R"}
        token = (await client.post("/api/v1/auth/register", json=body)).json()["access_token"]
        yield SchedulingApi(client, {"Authorization": f"Bearer {token}"})


async def concurrently(requests: list[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def send(request: Awaitable[httpx.Response]) -> None:
        responses.append(await request)

    async with anyio.create_task_group() as group:
        for request in requests:
            group.start_soon(send, request)
    return responses


async def _rows(db: CommittedDatabase, **where: Any) -> int:
    async with db.sessionmaker() as session:
        query = select(func.count()).select_from(Assignment).filter_by(**where)
        return int((await session.execute(query)).scalar_one())


async def test_different_people_on_one_block_all_succeed(
    live: SchedulingApi, committed_db: CommittedDatabase
) -> None:
    api = live
    block = (await api.blocks(MONDAY, MONDAY))[0]
    schedule, rotation = await api.schedule(MONDAY, MONDAY), await api.rotation(max_residents=8)
    people = [await api.person() for _ in range(AT_ONCE)]
    responses = await concurrently([api.assign(schedule, p, block, rotation) for p in people])
    assert [r.status_code for r in responses] == [201] * AT_ONCE, [r.text for r in responses]
    assert {r.json()["person_id"] for r in responses} == {p["id"] for p in people}
    assert await _rows(committed_db) == AT_ONCE


async def test_the_same_person_on_one_block_wins_once(
    live: SchedulingApi, committed_db: CommittedDatabase
) -> None:
    api = live
    block = (await api.blocks(MONDAY, MONDAY))[0]
    schedule, person = await api.schedule(MONDAY, MONDAY), await api.person()
    rotations = [await api.rotation() for _ in range(AT_ONCE)]
    responses = await concurrently(
        [api.assign(schedule, person, block, rotation) for rotation in rotations]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (AT_ONCE - 1), [r.text for r in responses]
    assert [r.json() for r in responses if r.status_code == 409] == [
        {"detail": "This person already has an assignment in this block"}
    ] * (AT_ONCE - 1)
    assert await _rows(committed_db) == 1


async def test_overlapping_block_generations_make_each_block_once(live: SchedulingApi) -> None:
    api = live
    spans = [
        {"start_date": "2027-03-01", "end_date": "2027-03-10"},
        {"start_date": "2027-03-05", "end_date": "2027-03-14"},
        {"start_date": "2027-03-01", "end_date": "2027-03-14"},
    ]
    responses = await concurrently(
        [api.client.post("/api/v1/blocks/generate", json=s, headers=api.headers) for s in spans]
    )
    assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
    assert sum(r.json()["created"] for r in responses) == 28  # 14 days, AM and PM
    listed = (await api.client.get("/api/v1/blocks", headers=api.headers)).json()
    assert listed["count"] == 28


async def test_two_swaps_of_one_assignment_approved_at_once_execute_once(
    live: SchedulingApi,
) -> None:
    api = live
    block = (await api.blocks(MONDAY, MONDAY))[0]
    schedule, rotation = await api.schedule(MONDAY, MONDAY), await api.rotation()
    ada, bob, cyd = [await api.person("resident", pgy_level=2) for _ in range(3)]
    assignment = await api.assigned(schedule, ada, block, rotation)
    swaps = []
    for to in (bob, cyd):
        response = await api.client.post(
            "/api/v1/swaps",
            json={"assignment_id": assignment["id"], "to_person_id": to["id"], "reason": "r"},
            headers=api.headers,
        )
        assert response.status_code == 201, response.text
        swaps.append(response.json())
    responses = await concurrently(
        [
            api.client.post(
                "/api/hitl/resume",
                json={"thread_id": swap["thread_id"], "decision": "approve"},
                headers=api.headers,
            )
            for swap in swaps
        ]
    )
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    (loser,) = [r for r in responses if r.status_code == 409]
    assert loser.json()["detail"].startswith(NO_LONGER_HOLDS)
    after = [
        (await api.client.get(f"/api/v1/swaps/{s['id']}", headers=api.headers)).json()
        for s in swaps
    ]
    assert sorted(s["status"] for s in after) == ["approved", "invalidated"]
    (winner,) = [s for s in after if s["status"] == "approved"]
    listed = (
        await api.client.get(f"/api/v1/schedules/{schedule['id']}/assignments", headers=api.headers)
    ).json()
    assert [a["person_id"] for a in listed["items"]] == [winner["to_person_id"]]
