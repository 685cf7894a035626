"""Issue 13, findings 1, 4 and 8: what a credential may do with keys, users and its own login."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import LoginSession, RefreshToken, User
from tandem.identity.scopes import Role
from tests.conftest import LoginAs
from tests.factories import TEST_PASSWORD, make_user
from tests.integration.test_api_keys import create_key

pytestmark = pytest.mark.anyio

PASSWORD_LOGIN_ONLY = "API keys are created and revoked with a password login, not an API key"


async def password_login(client: httpx.AsyncClient, user: User) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_an_api_key_cannot_create_or_revoke_keys(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    first = (await create_key(client, headers, expires_at=None)).json()
    other = (await create_key(client, headers)).json()
    as_key = {"X-API-Key": first["key"]}
    minted = await create_key(client, as_key)
    assert minted.status_code == 403, minted.text
    assert minted.json() == {"detail": PASSWORD_LOGIN_ONLY}
    revoked = await client.delete(f"/api/v1/api-keys/{other['id']}", headers=as_key)
    assert revoked.status_code == 403, revoked.text
    assert revoked.json() == {"detail": PASSWORD_LOGIN_ONLY}
    still = await client.get("/api/v1/projects", headers={"X-API-Key": other["key"]})
    assert still.status_code == 200, still.text
    assert still.json() == {"items": [], "count": 0}


async def test_a_narrowed_login_creates_only_keys_that_end_with_it(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    narrowed = await login_as(member, {"projects:read"})
    forever = await create_key(client, narrowed)
    assert forever.status_code == 403, forever.text
    assert forever.json()["detail"].startswith(
        "A login narrowed to some scopes creates only keys that expire by the end of the login"
    )
    later = datetime.now(UTC) + timedelta(days=365)
    too_late = await create_key(client, narrowed, expires_at=later.isoformat())
    assert too_late.status_code == 403, too_late.text
    assert too_late.json() == forever.json()  # the same end of the login
    soon = datetime.now(UTC) + timedelta(days=1)
    fine = await create_key(client, narrowed, expires_at=soon.isoformat())
    assert fine.status_code == 201, fine.text
    assert fine.json()["scopes"] == ["projects:read"]


@pytest.mark.parametrize(
    "role",
    [pytest.param(Role.admin, id="admin"), pytest.param(Role.member, id="member")],
)
async def test_a_users_admin_key_cannot_grant_a_role_beyond_its_scopes(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession, role: Role
) -> None:
    admin = await make_user(Role.admin)
    key = (await create_key(client, await login_as(admin), scopes=["users:admin"])).json()["key"]
    as_key = {"X-API-Key": key}
    created = await client.post(
        "/api/v1/users",
        json={
            "email": "new@example.com",
            "password": "a long password",
            "full_name": "N",
            "role": role.value,
        },
        headers=as_key,
    )
    assert created.status_code == 403, created.text
    assert created.json()["detail"].startswith(f"Cannot give the role {role.value}: it grants")
    colleague = await make_user(organization_id=admin.organization_id)
    promoted = await client.patch(
        f"/api/v1/users/{colleague.id}", json={"role": "admin"}, headers=as_key
    )
    assert promoted.status_code == 403, promoted.text
    assert promoted.json()["detail"].startswith("Cannot give the role admin: it grants")


async def test_a_refreshed_token_lists_the_scopes_of_the_role_today(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await make_user(Role.admin)
    await make_user(Role.admin, organization_id=admin.organization_id)
    tokens = await password_login(client, admin)
    assert "users:admin" in tokens["scope"].split()
    await db_session.execute(update(User).where(User.id == admin.id).values(role=Role.member.value))
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert "users:admin" not in refreshed.json()["scope"].split()
    assert "schedule:write" not in refreshed.json()["scope"].split()
    assert "agent:run" in refreshed.json()["scope"].split()


async def test_reactivating_a_user_does_not_revive_their_keys(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    admin = await make_user(Role.admin, organization_id=member.organization_id)
    key = (await create_key(client, await login_as(member))).json()["key"]
    admin_headers = await login_as(admin)
    assert (
        await client.delete(f"/api/v1/users/{member.id}", headers=admin_headers)
    ).status_code == 204
    back = await client.patch(
        f"/api/v1/users/{member.id}", json={"is_active": True}, headers=admin_headers
    )
    assert back.status_code == 200, back.text
    assert (back.json()["id"], back.json()["is_active"]) == (str(member.id), True)
    response = await client.get("/api/v1/projects", headers={"X-API-Key": key})
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "API key revoked"}


async def test_a_login_ends_after_its_absolute_lifetime(
    client: httpx.AsyncClient, db_session: AsyncSession, member: User
) -> None:
    tokens = await password_login(client, member)
    await db_session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == member.id)
        .values(created_at=datetime.now(UTC) - timedelta(days=30, seconds=1))
    )
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401, refreshed.text
    assert refreshed.json() == {"detail": "Login expired; sign in again"}
    access = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert access.status_code == 401, access.text
    assert access.json() == {"detail": "Login expired; sign in again"}


async def test_a_refresh_token_never_outlives_its_login(
    client: httpx.AsyncClient, db_session: AsyncSession, member: User
) -> None:
    """Idle timeout: a refresh token expires `refresh_token_days` after its last use, and
    never later than the login's absolute end."""
    tokens = await password_login(client, member)
    await db_session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == member.id)
        .values(created_at=datetime.now(UTC) - timedelta(days=29))
    )
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    newest = await db_session.scalar(
        select(RefreshToken.expires_at).order_by(RefreshToken.created_at.desc()).limit(1)
    )
    assert newest is not None
    assert newest <= datetime.now(UTC) + timedelta(days=1, minutes=1)
