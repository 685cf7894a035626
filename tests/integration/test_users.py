"""User administration inside one organization (users:admin), and the current organization."""

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.logins import AMBIGUOUS_LOGIN
from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.notifications.models import OutboxMessage
from tests.conftest import LoginAs
from tests.factories import TEST_PASSWORD, make_user

pytestmark = pytest.mark.anyio

NEW_USER = {"email": "Bob@Example.com", "password": "bobs long password", "full_name": "Bob"}


@pytest.fixture
async def admin(db_session: AsyncSession) -> User:
    return await make_user(Role.admin)


async def test_admin_creates_a_user_in_their_organization(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, db_session: AsyncSession
) -> None:
    response = await client.post(
        "/api/v1/users", json=NEW_USER | {"role": "reviewer"}, headers=await login_as(admin)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["email"], body["role"], body["organization_id"]) == (
        "bob@example.com",
        "reviewer",
        str(admin.organization_id),
    )
    assert not {"password", "password_hash"} & set(body)
    assert "bobs long password" not in response.text
    welcome = await db_session.scalar(
        select(OutboxMessage).where(OutboxMessage.recipient == "bob@example.com")
    )
    assert welcome is not None


async def test_created_user_can_log_in_with_the_role_scopes(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    await client.post("/api/v1/users", json=NEW_USER, headers=await login_as(admin))
    tokens = await client.post(
        "/api/v1/auth/login", json={"email": "bob@example.com", "password": NEW_USER["password"]}
    )
    assert tokens.status_code == 200, tokens.text
    assert "users:admin" not in tokens.json()["scope"]
    assert "agent:run" in tokens.json()["scope"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        pytest.param({"email": "taken@example.com"}, 409, "Email already registered", id="dup"),
        pytest.param({"password": "short"}, 422, "Password too short", id="short-password"),
        pytest.param({"role": "owner"}, 422, "Input should be", id="unknown-role"),
        pytest.param({"email": "nope"}, 422, "valid email", id="bad-email"),
    ],
)
async def test_create_user_errors(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    admin: User,
    body: dict[str, str],
    status: int,
    detail: str,
) -> None:
    await make_user(email="taken@example.com", organization_id=admin.organization_id)
    response = await client.post(
        "/api/v1/users", json=NEW_USER | body, headers=await login_as(admin)
    )
    assert response.status_code == status
    assert detail in str(response.json()["detail"])


@pytest.mark.parametrize(
    "role", [pytest.param(r, id=r.value) for r in (Role.member, Role.reviewer, Role.coordinator)]
)
async def test_only_admins_administer_users(
    client: httpx.AsyncClient, login_as: LoginAs, role: Role
) -> None:
    user = await make_user(role)
    headers = await login_as(user)
    for response in (
        await client.post("/api/v1/users", json=NEW_USER, headers=headers),
        await client.get("/api/v1/users", headers=headers),
        await client.delete(f"/api/v1/users/{user.id}", headers=headers),
    ):
        assert response.status_code == 403, response.text
        assert response.json() == {"detail": "Missing required scope: users:admin"}


async def test_list_get_and_update_within_the_organization(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    colleague = await make_user(organization_id=admin.organization_id)
    await make_user()  # someone in another organization: never listed
    headers = await login_as(admin)

    listed = (await client.get("/api/v1/users?limit=1", headers=headers)).json()
    assert listed["count"] == 2
    assert len(listed["items"]) == 1
    everyone = (await client.get("/api/v1/users", headers=headers)).json()
    assert {u["id"] for u in everyone["items"]} == {str(admin.id), str(colleague.id)}

    fetched = await client.get(f"/api/v1/users/{colleague.id}", headers=headers)
    assert fetched.json()["email"] == colleague.email

    patched = await client.patch(
        f"/api/v1/users/{colleague.id}",
        json={"full_name": "New Name", "role": "coordinator"},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["full_name"], patched.json()["role"]) == ("New Name", "coordinator")


async def test_pages_of_users_carry_the_total_past_the_last_page(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    colleague = await make_user(organization_id=admin.organization_id)
    await make_user()  # another organization: never counted
    headers = await login_as(admin)

    second = (await client.get("/api/v1/users?limit=1&offset=1", headers=headers)).json()
    assert [u["id"] for u in second["items"]] == [str(colleague.id)]
    assert second["count"] == 2
    for query in ("offset=2", "limit=1&offset=5"):
        past = await client.get(f"/api/v1/users?{query}", headers=headers)
        assert past.json() == {"items": [], "count": 2}


async def test_deactivating_a_user_locks_them_out(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    colleague = await make_user(organization_id=admin.organization_id)
    colleague_headers = await login_as(colleague)
    assert (await client.get("/api/v1/users/me", headers=colleague_headers)).status_code == 200

    response = await client.delete(f"/api/v1/users/{colleague.id}", headers=await login_as(admin))
    assert response.status_code == 204, response.text
    me = await client.get("/api/v1/users/me", headers=colleague_headers)
    assert me.status_code == 401, me.text
    assert me.json() == {"detail": "User is inactive or no longer exists"}
    fetched = await client.get(f"/api/v1/users/{colleague.id}", headers=await login_as(admin))
    assert fetched.json()["is_active"] is False


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"role": "member"}, id="demote"),
        pytest.param({"is_active": False}, id="deactivate"),
    ],
)
async def test_the_last_admin_cannot_be_removed(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, change: dict[str, object]
) -> None:
    response = await client.patch(
        f"/api/v1/users/{admin.id}", json=change, headers=await login_as(admin)
    )
    assert response.status_code == 409, response.text
    assert "at least one active admin" in response.json()["detail"]


async def test_update_rejects_unknown_fields(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    response = await client.patch(
        f"/api/v1/users/{admin.id}", json={"email": "x@example.com"}, headers=await login_as(admin)
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "email"]


@pytest.mark.parametrize("field", ["full_name", "role", "is_active"])
async def test_update_refuses_null_for_a_field_a_user_cannot_be_without(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, field: str
) -> None:
    """PATCH everywhere: only the fields sent change; null clears an optional field and is
    422 for one the row cannot be without."""
    response = await client.patch(
        f"/api/v1/users/{admin.id}", json={field: None}, headers=await login_as(admin)
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"loc": ["body", field], "msg": f"{field} cannot be null", "type": "value_error"}
    ]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
async def test_another_organizations_user_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, method: str
) -> None:
    stranger = await make_user()
    kwargs = {"json": {"full_name": "Hacked"}} if method == "patch" else {}
    response = await client.request(
        method.upper(), f"/api/v1/users/{stranger.id}", headers=await login_as(admin), **kwargs
    )
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"User {stranger.id} not found"}


async def test_unknown_user_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User
) -> None:
    missing = uuid.uuid4()
    response = await client.get(f"/api/v1/users/{missing}", headers=await login_as(admin))
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"User {missing} not found"}


async def test_current_organization(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    member = await make_user()
    response = await client.get("/api/v1/organizations/current", headers=await login_as(member))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(member.organization_id)
    assert set(response.json()) == {"id", "name", "created_at"}


async def test_an_address_of_another_organization_is_not_revealed(
    client: httpx.AsyncClient, login_as: LoginAs, admin: User, db_session: AsyncSession
) -> None:
    """E-mail is unique per organization: creating a user answers the same whether or not the
    address has an account elsewhere, and each account signs in with its own password."""
    elsewhere = await make_user(email="shared@example.com")
    headers = await login_as(admin)
    body = {"email": "shared@example.com", "password": "a different password", "full_name": "S"}
    created = await client.post("/api/v1/users", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["organization_id"] == str(admin.organization_id)
    again = await client.post("/api/v1/users", json=body, headers=headers)
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "Email already registered"}
    mine = await client.post(
        "/api/v1/auth/login",
        json={"email": "shared@example.com", "password": "a different password"},
    )
    assert mine.status_code == 200, mine.text
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {mine.json()['access_token']}"}
    )
    assert me.json()["organization_id"] == str(admin.organization_id)
    theirs = await client.post(
        "/api/v1/auth/login", json={"email": "shared@example.com", "password": TEST_PASSWORD}
    )
    assert theirs.status_code == 200, theirs.text
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {theirs.json()['access_token']}"}
    )
    assert me.json()["organization_id"] == str(elsewhere.organization_id)


async def test_one_address_and_password_in_two_organizations_needs_the_organization(
    client: httpx.AsyncClient, admin: User
) -> None:
    first = await make_user(email="twice@example.com")
    second = await make_user(email="twice@example.com")
    credentials = {"email": "twice@example.com", "password": TEST_PASSWORD}
    ambiguous = await client.post("/api/v1/auth/login", json=credentials)
    assert ambiguous.status_code == 409, ambiguous.text
    assert ambiguous.json() == {"detail": AMBIGUOUS_LOGIN}
    for user in (first, second):
        chosen = await client.post(
            "/api/v1/auth/login",
            json=credentials | {"organization_id": str(user.organization_id)},
        )
        assert chosen.status_code == 200, chosen.text
        me = await client.get(
            "/api/v1/users/me",
            headers={"Authorization": f"Bearer {chosen.json()['access_token']}"},
        )
        assert me.json()["id"] == str(user.id)
