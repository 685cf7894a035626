"""Registration, login, refresh rotation, logout: API.md "Identity", over HTTP, both databases."""

from collections.abc import Awaitable, Callable

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import LoginSession, Organization, RefreshToken, User
from tandem.notifications.models import OutboxMessage
from tests.factories import TEST_PASSWORD, make_user

pytestmark = pytest.mark.anyio

PASSWORD = "a long enough password"


async def register(client: httpx.AsyncClient, **overrides: object) -> httpx.Response:
    body = {
        "email": "ann@example.com",
        "password": PASSWORD,
        "full_name": "Ann Admin",
        "organization_name": "Acme",
    } | overrides
    return await client.post("/api/v1/auth/register", json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_register_creates_an_organization_and_its_admin(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    response = await register(client)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    user = body["user"]
    assert set(user) == {
        "id",
        "email",
        "full_name",
        "role",
        "organization_id",
        "is_active",
        "created_at",
    }
    assert (user["email"], user["full_name"], user["role"], user["is_active"]) == (
        "ann@example.com",
        "Ann Admin",
        "admin",
        True,
    )
    organization = await db_session.get(
        Organization, __import__("uuid").UUID(user["organization_id"])
    )
    assert organization is not None
    assert organization.name == "Acme"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user["id"]
    assert claims["org"] == user["organization_id"]
    assert "users:admin" in claims["scopes"]


async def test_register_queues_the_welcome_email(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    await register(client, email="welcome@example.com")
    messages = (
        await db_session.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient == "welcome@example.com")
        )
    ).all()
    assert len(messages) == 1
    assert "Welcome" in messages[0].subject
    # No text the registrant chose beyond their name (issue 13, finding 3).
    assert "Acme" not in messages[0].subject + messages[0].body


async def test_register_without_organization_name_names_it_after_the_person(
    client: httpx.AsyncClient,
) -> None:
    response = await register(client, organization_name=None)
    token = response.json()["access_token"]
    organization = await client.get("/api/v1/organizations/current", headers=bearer(token))
    assert organization.status_code == 200, organization.text
    assert organization.json()["name"] == "Ann Admin's organization"


@pytest.mark.parametrize(
    "second_email",
    [pytest.param("ann@example.com", id="same"), pytest.param("ANN@Example.com", id="other-case")],
)
async def test_duplicate_email_is_409(client: httpx.AsyncClient, second_email: str) -> None:
    await register(client)
    response = await register(client, email=second_email)
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "Email already registered"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("email", "not-an-email", "valid email", id="bad-email"),
        pytest.param("password", "short", "Password too short: at least 12 characters", id="short"),
        pytest.param("full_name", "", "at least 1 character", id="no-name"),
    ],
)
async def test_bad_registration_is_422_naming_the_field(
    client: httpx.AsyncClient, field: str, value: str, message: str
) -> None:
    response = await register(client, **{field: value})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert message in error["msg"]
    assert set(error) == {"loc", "msg", "type"}, "the rejected input is not echoed back"


async def test_login_with_json_and_form(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    user = await make_user()
    json_login = await login(client, user.email, TEST_PASSWORD)
    form_login = await client.post(
        "/api/v1/auth/login", data={"username": user.email.upper(), "password": TEST_PASSWORD}
    )
    for response in (json_login, form_login):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["scope"].split() == sorted(body["scope"].split())
        assert "agent:run" in body["scope"]
        me = await client.get("/api/v1/users/me", headers=bearer(body["access_token"]))
        assert me.json()["email"] == user.email
    assert response.headers["x-ratelimit-limit"] == "5"


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        pytest.param("agent:run jobs:read", "agent:run jobs:read", id="subset"),
        pytest.param("agent:run users:admin", "agent:run", id="beyond-role-dropped"),
    ],
)
async def test_login_scope_narrows_the_token(
    client: httpx.AsyncClient, requested: str, granted: str
) -> None:
    user = await make_user()
    response = await client.post(
        "/api/v1/auth/login",
        data={"username": user.email, "password": TEST_PASSWORD, "scope": requested},
    )
    assert response.json()["scope"] == granted
    me = await client.get("/api/v1/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["scopes"] == granted.split()


@pytest.mark.parametrize(
    "case",
    [pytest.param("wrong-password", id="wrong-password"), pytest.param("unknown", id="unknown")],
)
async def test_wrong_credentials_get_one_answer(client: httpx.AsyncClient, case: str) -> None:
    user = await make_user()
    email = user.email if case == "wrong-password" else "nobody@example.com"
    response = await login(client, email, "not the password at all")
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Incorrect email or password"}


async def test_inactive_user_cannot_log_in(client: httpx.AsyncClient) -> None:
    user = await make_user(is_active=False)
    response = await login(client, user.email, TEST_PASSWORD)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Incorrect email or password"}


async def test_login_body_errors_are_422(client: httpx.AsyncClient) -> None:
    form = await client.post("/api/v1/auth/login", data={"username": "ann@example.com"})
    assert form.status_code == 422, form.text
    assert [e["loc"][-1] for e in form.json()["detail"]] == ["password"]
    garbage = await client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert garbage.status_code == 422, garbage.text
    assert garbage.json()["detail"][0]["type"] == "json_invalid"


async def test_a_body_that_is_not_text_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b"\xff\xfe\x00",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_sixth_login_in_a_minute_is_429(client: httpx.AsyncClient) -> None:
    user = await make_user()
    for _ in range(5):
        assert (await login(client, user.email, "wrong password!!")).status_code == 401
    response = await login(client, user.email, TEST_PASSWORD)
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert "Retry in" in response.json()["detail"]
    other_email = await login(client, "other@example.com", "wrong password!!")
    assert other_email.status_code == 401, "the budget is per address and e-mail"


async def test_refresh_rotates_and_the_old_token_stops_working(client: httpx.AsyncClient) -> None:
    first = (await register(client)).json()
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["access_token"] != first["access_token"]
    me = await client.get("/api/v1/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "ann@example.com"
    again = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert again.status_code == 401, again.text
    assert "already used" in again.json()["detail"]


async def test_reusing_a_refresh_token_revokes_the_whole_login(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    first = (await register(client)).json()
    other_login = (await login(client, "ann@example.com")).json()
    second = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401, reuse.text
    assert reuse.json() == {
        "detail": "Refresh token already used: every token of this login has been revoked. "
        "Sign in again."
    }
    newest_refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert newest_refresh.status_code == 401, newest_refresh.text
    assert newest_refresh.json() == {"detail": "This login was signed out; sign in again"}
    newest_access = await client.get("/api/v1/users/me", headers=bearer(second["access_token"]))
    assert newest_access.status_code == 401, newest_access.text
    assert newest_access.json() == {"detail": "This login was signed out; sign in again"}
    untouched = await client.get("/api/v1/users/me", headers=bearer(other_login["access_token"]))
    assert untouched.status_code == 200, "another login of the same user is not affected"
    reasons = (await db_session.scalars(select(LoginSession.revoked_reason))).all()
    assert sorted(r or "" for r in reasons) == ["", "refresh_token_reused"]


async def test_logout_ends_the_login(client: httpx.AsyncClient) -> None:
    tokens = (await register(client)).json()
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 401, refresh.text
    assert refresh.json() == {"detail": "This login was signed out; sign in again"}
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401, me.text
    assert "signed out" in me.json()["detail"]


async def test_unknown_refresh_token_is_401_and_logout_of_it_is_harmless(
    client: httpx.AsyncClient,
) -> None:
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})
    assert refresh.status_code == 401, refresh.text
    assert refresh.json() == {"detail": "Invalid refresh token"}
    logout = await client.post("/api/v1/auth/logout", json={"refresh_token": "made-up"})
    assert logout.status_code == 204, logout.text


async def test_refresh_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    tokens = (await register(client)).json()
    stored = (await db_session.scalars(select(RefreshToken.token_hash))).all()
    assert tokens["refresh_token"] not in stored
    assert all(len(h) == 64 for h in stored)
    password_hash = await db_session.scalar(select(User.password_hash))
    assert password_hash is not None
    assert password_hash.startswith("$argon2id$")


async def test_me_lists_the_principal_scopes(
    client: httpx.AsyncClient, login_as: Callable[..., Awaitable[dict[str, str]]]
) -> None:
    user = await make_user()
    response = await client.get("/api/v1/users/me", headers=await login_as(user))
    body = response.json()
    assert body["id"] == str(user.id)
    assert "password" not in str(body).lower()
    assert body["scopes"] == sorted(body["scopes"])
    assert "review:write" not in body["scopes"]
