"""Issue 13, finding 7: the audit trail (ASVS 16.3), readable by admins at /api/v1/audit."""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.audit.models import AuditEvent
from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.scheduling.models import ScheduleStatus
from tests.conftest import LoginAs
from tests.factories import TEST_PASSWORD, PersonFactory, ScheduleFactory, make_thread, make_user
from tests.integration.test_api_keys import create_key

pytestmark = pytest.mark.anyio

ADDRESS = "127.0.0.1"  # httpx's ASGI transport reports this client address


@pytest.fixture
async def admin(db_session: AsyncSession) -> User:
    return await make_user(Role.admin)


async def trail(
    client: httpx.AsyncClient, headers: dict[str, str], **query: Any
) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/audit", params=query, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] >= len(body["items"])
    return body["items"]  # type: ignore[no-any-return]


async def test_logins_and_failed_logins_are_recorded(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, db_session: AsyncSession
) -> None:
    colleague = await make_user(organization_id=admin.organization_id)
    good = {"email": colleague.email, "password": TEST_PASSWORD}
    assert (await client.post("/api/v1/auth/login", json=good)).status_code == 200
    bad = good | {"password": "not the password"}
    assert (await client.post("/api/v1/auth/login", json=bad)).status_code == 401
    unknown = {"email": "nobody@example.com", "password": "whatever it is"}
    assert (await client.post("/api/v1/auth/login", json=unknown)).status_code == 401

    events = await trail(client, await login_as(admin), action="login")
    assert [(e["outcome"], e["target_id"], e["client_address"]) for e in events] == [
        ("failure", str(colleague.id), ADDRESS),
        ("success", str(colleague.id), ADDRESS),
    ]
    assert events[1]["actor_id"] == str(colleague.id)
    assert events[0]["details"] == {"reason": "wrong_password"}
    # The unknown address belongs to no organization: stored, shown to no tenant.
    orphan = (
        await db_session.scalars(select(AuditEvent).where(AuditEvent.organization_id.is_(None)))
    ).one()
    assert (orphan.action, orphan.outcome) == ("login", "failure")
    assert orphan.details == {"email": "nobody@example.com", "reason": "unknown_email"}


async def test_changes_to_users_keys_and_deletions_are_recorded(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    headers = await login_as(admin)
    colleague = await make_user(organization_id=admin.organization_id)
    url = f"/api/v1/users/{colleague.id}"
    assert (await client.patch(url, json={"role": "reviewer"}, headers=headers)).is_success
    assert (await client.delete(url, headers=headers)).status_code == 204
    key = (await create_key(client, headers)).json()
    assert (await client.delete(f"/api/v1/api-keys/{key['id']}", headers=headers)).is_success
    project = (await client.post("/api/v1/projects", json={"name": "P"}, headers=headers)).json()
    assert (await client.delete(f"/api/v1/projects/{project['id']}", headers=headers)).is_success
    person = await PersonFactory.create_async(organization_id=admin.organization_id)
    assert (await client.delete(f"/api/v1/people/{person.id}", headers=headers)).is_success
    schedule = await ScheduleFactory.create_async(
        organization_id=admin.organization_id,
        start_date=datetime(2030, 1, 1).date(),
        end_date=datetime(2030, 1, 7).date(),
        status=ScheduleStatus.draft,
    )
    assert (await client.delete(f"/api/v1/schedules/{schedule.id}", headers=headers)).is_success

    events = await trail(client, headers)
    seen = [(e["action"], e["target_type"], e["target_id"], e["details"]) for e in events]
    assert seen == [
        ("schedule.deleted", "schedule", str(schedule.id), {"status": "draft"}),
        ("person.deleted", "person", str(person.id), None),
        ("project.deleted", "project", project["id"], {"name": "P"}),
        ("api_key.revoked", "api_key", key["id"], None),
        (
            "api_key.created",
            "api_key",
            key["id"],
            {"scopes": key["scopes"], "prefix": key["prefix"]},
        ),
        ("user.status_changed", "user", str(colleague.id), {"is_active": False}),
        ("user.role_changed", "user", str(colleague.id), {"from": "member", "to": "reviewer"}),
    ]
    assert {(e["actor_id"], e["outcome"], e["client_address"]) for e in events} == {
        (str(admin.id), "success", ADDRESS)
    }


async def test_review_decisions_are_recorded(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    thread = await make_thread(admin.organization_id)
    headers = await login_as(admin)
    decided = await client.post(
        "/api/hitl/resume",
        json={"thread_id": str(thread.id), "decision": "reject", "feedback": "Off topic"},
        headers=headers,
    )
    assert decided.status_code == 200, decided.text
    [event] = await trail(client, headers, action="review.decided")
    assert event["target_id"] == str(thread.id)
    assert event["details"] == {"decision": "reject", "revision": 1, "kind": "content"}
    assert event["actor_id"] == str(admin.id)


async def test_a_reused_refresh_token_is_recorded(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    body = {"email": admin.email, "password": TEST_PASSWORD}
    refresh = (await client.post("/api/v1/auth/login", json=body)).json()["refresh_token"]
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})).is_success
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert again.status_code == 401, again.text
    assert again.json() == {
        "detail": "Refresh token already used: every token of this login has been revoked. "
        "Sign in again."
    }
    [event] = await trail(client, await login_as(admin), action="refresh_token.reused")
    assert (event["outcome"], event["target_id"]) == ("failure", str(admin.id))


async def test_the_trail_is_the_callers_organization_and_admins_only(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    stranger = await make_user(Role.admin)
    await client.post("/api/v1/auth/login", json={"email": stranger.email, "password": "wrong!"})
    headers = await login_as(admin)
    await client.post("/api/v1/projects", json={"name": "Mine"}, headers=headers)
    assert await trail(client, headers) == []
    member = await make_user(organization_id=admin.organization_id)
    refused = await client.get("/api/v1/audit", headers=await login_as(member))
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "Missing required scope: users:admin"}


async def test_the_trail_filters_and_pages(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    other_admin = await make_user(Role.admin, organization_id=admin.organization_id)
    for user in (admin, other_admin, admin):
        await client.post("/api/v1/auth/login", json={"email": user.email, "password": "nope!"})
    headers = await login_as(admin)
    mine = await trail(client, headers, action="login", outcome="failure")
    assert len(mine) == 3
    assert [e["target_id"] for e in await trail(client, headers, limit=1, offset=1)] == [
        str(other_admin.id)
    ]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert await trail(client, headers, since=later) == []
    assert await trail(client, headers, actor_id=str(uuid.uuid4())) == []
    wrong = await client.get("/api/v1/audit", params={"action": "no.such"}, headers=headers)
    assert wrong.status_code == 422, wrong.text
    assert [(e["loc"], e["type"]) for e in wrong.json()["detail"]] == [
        (["query", "action"], "enum")
    ]


async def test_each_event_is_a_structured_log_line(
    client: httpx.AsyncClient, admin: User, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tandem.audit"):
        await client.post("/api/v1/auth/login", json={"email": admin.email, "password": "nope!"})
    [record] = [r for r in caplog.records if r.name == "tandem.audit"]
    fields = record.audit  # type: ignore[attr-defined]
    assert fields["action"] == "login"
    assert fields["outcome"] == "failure"
    assert fields["organization_id"] == str(admin.organization_id)
    assert fields["client_address"] == ADDRESS
    assert "login" in record.getMessage()
