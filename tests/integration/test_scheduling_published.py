"""Issue 13, finding 9: a published schedule is read-only except through swaps."""

import uuid
from datetime import date

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.scheduling.models import Schedule, ScheduleStatus
from tests.conftest import LoginAs
from tests.factories import make_user
from tests.integration.scheduling_setup import SchedulingApi

pytestmark = pytest.mark.anyio

MONDAY = date(2027, 3, 1)


@pytest.fixture
async def api(client: httpx.AsyncClient, login_as: LoginAs) -> SchedulingApi:
    coordinator: User = await make_user(Role.coordinator)
    return SchedulingApi(client, await login_as(coordinator))


async def publish(db_session: AsyncSession, schedule_id: str) -> None:
    """Published as generation then publishing would leave it (the route needs a solve)."""
    await db_session.execute(
        update(Schedule)
        .where(Schedule.id == uuid.UUID(schedule_id))
        .values(status=ScheduleStatus.published)
    )


async def test_a_published_schedule_takes_no_manual_change(
    api: SchedulingApi, db_session: AsyncSession
) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    rotation = await api.rotation()
    schedule = await api.schedule(MONDAY, MONDAY)
    kept = await api.assigned(schedule, await api.person(), blocks[0], rotation)
    await publish(db_session, schedule["id"])
    added = await api.assign(schedule, await api.person(), blocks[0], rotation)
    assert added.status_code == 409, added.text
    assert added.json() == {"detail": "Schedule is published; change it through a swap"}
    removed = await api.client.delete(
        f"/api/v1/schedules/{schedule['id']}/assignments/{kept['id']}", headers=api.headers
    )
    assert removed.status_code == 409, removed.text
    assert removed.json() == {"detail": "Schedule is published; change it through a swap"}
    listed = await api.client.get(
        f"/api/v1/schedules/{schedule['id']}/assignments", headers=api.headers
    )
    assert [a["id"] for a in listed.json()["items"]] == [kept["id"]]


async def test_a_person_on_a_published_schedule_cannot_be_deleted(
    api: SchedulingApi, db_session: AsyncSession
) -> None:
    blocks = await api.blocks(MONDAY, MONDAY)
    rotation = await api.rotation()
    person = await api.person()
    published = await api.schedule(MONDAY, MONDAY, name="Spring")
    await api.assigned(published, person, blocks[0], rotation)
    await publish(db_session, published["id"])
    refused = await api.client.delete(f"/api/v1/people/{person['id']}", headers=api.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json() == {
        "detail": f"{person['name']} has assignments in the published schedule Spring; "
        "swap them out first"
    }
    got = await api.client.get(f"/api/v1/people/{person['id']}", headers=api.headers)
    assert got.status_code == 200, got.text
    assert got.json()["id"] == person["id"]
    draft_only = await api.person()
    await api.assigned(
        await api.schedule(MONDAY, MONDAY, name="Draft"), draft_only, blocks[0], rotation
    )
    deleted = await api.client.delete(f"/api/v1/people/{draft_only['id']}", headers=api.headers)
    assert deleted.status_code == 204, deleted.text
