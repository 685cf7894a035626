"""Authentication failures and scope checks, the same for every protected route."""

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.models import User
from tests.conftest import LoginAs
from tests.factories import make_user

pytestmark = pytest.mark.anyio


async def test_no_credentials_is_401_naming_both_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401, response.text
    detail = response.json()["detail"]
    assert "Authorization" in detail
    assert "X-API-Key" in detail
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        pytest.param("Basic dXNlcjpwYXNz", "must be `Bearer <access token>`", id="basic"),
        pytest.param("Bearer not.a.token", "Invalid access token", id="garbage-token"),
        pytest.param("Bearer", "must be `Bearer <access token>`", id="empty-bearer"),
    ],
)
async def test_malformed_authorization_is_401(
    client: httpx.AsyncClient, header: str, detail: str
) -> None:
    response = await client.get("/api/v1/users/me", headers={"Authorization": header})
    assert response.status_code == 401, response.text
    assert detail in response.json()["detail"]


async def test_unknown_api_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me", headers={"X-API-Key": "tdm_made_up"})
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Invalid API key"}


async def test_token_of_a_deactivated_user_is_401(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    user = await make_user()
    headers = await login_as(user)
    await db_session.execute(update(User).where(User.id == user.id).values(is_active=False))
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "User is inactive or no longer exists"}


async def test_token_signed_with_another_key_is_401(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    headers = await login_as(await make_user())
    claims = jwt.decode(headers["Authorization"][7:], options={"verify_signature": False})
    forged = jwt.encode(claims, "a-different-secret-of-enough-length-0123456789", "HS256")
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Invalid access token"}


async def test_expired_token_is_401(
    client: httpx.AsyncClient, login_as: LoginAs, app: FastAPI
) -> None:
    headers = await login_as(await make_user())
    claims = jwt.decode(headers["Authorization"][7:], options={"verify_signature": False})
    claims["exp"] = datetime.now(UTC) - timedelta(seconds=1)
    expired = jwt.encode(claims, app.state.token_signer.secret, "HS256")
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Access token expired"}


async def test_role_change_shrinks_existing_tokens(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    from tandem.identity.scopes import Role

    admin = await make_user(Role.admin)
    headers = await login_as(admin)
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 200
    await db_session.execute(update(User).where(User.id == admin.id).values(role="member"))
    response = await client.get("/api/v1/users", headers=headers)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Missing required scope: users:admin"}
