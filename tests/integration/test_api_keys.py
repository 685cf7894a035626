"""API keys: shown once, stored hashed, bounded by their creator's scopes, revoked at once."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import ApiKey, User
from tandem.identity.scopes import Role
from tests.conftest import LoginAs
from tests.factories import make_user

pytestmark = pytest.mark.anyio


async def create_key(
    client: httpx.AsyncClient, headers: dict[str, str], **body: object
) -> httpx.Response:
    payload = {"name": "ci", "scopes": ["projects:read"]} | body
    return await client.post("/api/v1/api-keys", json=payload, headers=headers)


async def test_key_is_shown_once_and_stored_as_a_hash(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, db_session: AsyncSession
) -> None:
    headers = await login_as(member)
    created = await create_key(client, headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "name", "prefix", "scopes", "key", "created_at", "expires_at"}
    assert body["key"].startswith(body["prefix"])
    assert body["scopes"] == ["projects:read"]
    listed = (await client.get("/api/v1/api-keys", headers=headers)).json()
    assert listed["count"] == 1
    assert "key" not in listed["items"][0]
    assert listed["items"][0]["prefix"] == body["prefix"]
    stored = (await db_session.scalars(select(ApiKey.key_hash))).all()
    assert body["key"] not in stored


async def test_key_authenticates_with_its_scopes_only(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    key = (await create_key(client, await login_as(member))).json()["key"]
    headers = {"X-API-Key": key}
    assert (await client.get("/api/v1/projects", headers=headers)).status_code == 200
    me = await client.get("/api/v1/users/me", headers=headers)
    assert me.json()["id"] == str(member.id)
    assert me.json()["scopes"] == ["projects:read"]
    refused = await client.post("/api/v1/projects", json={"name": "x"}, headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "Missing required scope: projects:write"}


async def test_scopes_beyond_the_creator_are_403(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    response = await create_key(
        client, await login_as(member), scopes=["projects:read", "users:admin"]
    )
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Cannot grant scopes you do not have: users:admin"}
    narrowed = await login_as(member, {"projects:read"})
    response = await create_key(client, narrowed, scopes=["agent:run"])
    assert response.status_code == 403, "a narrowed token cannot mint wider keys"


async def test_revoked_key_is_refused_at_once(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    created = (await create_key(client, headers)).json()
    revoke = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=headers)
    assert revoke.status_code == 204, revoke.text
    refused = await client.get("/api/v1/projects", headers={"X-API-Key": created["key"]})
    assert refused.status_code == 401, refused.text
    assert refused.json() == {"detail": "API key revoked"}
    listed = (await client.get("/api/v1/api-keys", headers=headers)).json()
    assert listed == {"items": [], "count": 0}
    again = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=headers)
    assert again.status_code == 404, again.text
    assert again.json() == {"detail": f"API key {created['id']} not found"}


async def test_expired_key_is_refused(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, db_session: AsyncSession
) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    created = (await create_key(client, await login_as(member), expires_at=soon.isoformat())).json()
    assert created["expires_at"].startswith(soon.strftime("%Y-%m-%dT%H:%M"))
    await db_session.execute(
        update(ApiKey).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    response = await client.get("/api/v1/projects", headers={"X-API-Key": created["key"]})
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "API key expired"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param({"expires_at": "2001-01-01T00:00:00Z"}, 422, "in the future", id="past"),
        pytest.param({"expires_at": "2099-01-01T00:00:00"}, 422, "timezone", id="naive"),
        pytest.param({"scopes": []}, 422, "at least 1 item", id="no-scopes"),
        pytest.param({"scopes": ["root"]}, 422, "Input should be", id="unknown-scope"),
    ],
)
async def test_invalid_key_requests_are_422(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    member: User,
    body: dict[str, object],
    status: int,
    message: str,
) -> None:
    response = await create_key(client, await login_as(member), **body)
    assert response.status_code == status
    assert message in str(response.json()["detail"])


async def test_keys_of_a_deactivated_creator_stop_working(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, db_session: AsyncSession
) -> None:
    key = (await create_key(client, await login_as(member))).json()["key"]
    await db_session.execute(update(User).where(User.id == member.id).values(is_active=False))
    response = await client.get("/api/v1/projects", headers={"X-API-Key": key})
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "API key's owner is inactive"}


async def test_admins_see_and_revoke_every_key_of_their_organization_only(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    admin = await make_user(Role.admin, organization_id=member.organization_id)
    outsider = await make_user(Role.admin)
    created = (await create_key(client, await login_as(member))).json()
    admin_view = (await client.get("/api/v1/api-keys", headers=await login_as(admin))).json()
    assert [k["id"] for k in admin_view["items"]] == [created["id"]]
    outsider_delete = await client.delete(
        f"/api/v1/api-keys/{created['id']}", headers=await login_as(outsider)
    )
    assert outsider_delete.status_code == 404, outsider_delete.text
    assert outsider_delete.json() == {"detail": f"API key {created['id']} not found"}
    colleague = await make_user(organization_id=member.organization_id)
    colleague_view = (
        await client.get("/api/v1/api-keys", headers=await login_as(colleague))
    ).json()
    assert colleague_view["count"] == 0
    revoke = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=await login_as(admin))
    assert revoke.status_code == 204, revoke.text
