"""Issue 13, finding 3: the console pages the mailed links open."""

import re

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.one_time import INVALID_LINK
from tandem.identity.scopes import Role
from tandem.identity.service import send_verification
from tandem.notifications.models import OutboxMessage
from tandem.settings import Settings
from tests.conftest import LoginAs
from tests.factories import make_user

pytestmark = pytest.mark.anyio

PASSWORD = "a long enough password"


async def _link(session: AsyncSession, address: str, page: str) -> str:
    bodies = await session.scalars(
        select(OutboxMessage.body).where(OutboxMessage.recipient == address)
    )
    for body in bodies:
        if match := re.search(rf"https?://[^/\s]+(/ui/{page}\?token=[A-Za-z0-9_-]+)", body):
            return match.group(1)
    raise AssertionError(f"no /ui/{page} link mailed to {address}")


def _token(link: str) -> str:
    return link.split("token=", 1)[1]


async def _can_sign_in(client: httpx.AsyncClient, email: str, password: str) -> bool:
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return login.status_code == 200


async def test_an_invitee_joins_through_the_page(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    admin = await make_user(Role.admin)
    await client.post(
        "/api/v1/invitations",
        json={"email": "guest@example.com", "role": "member"},
        headers=await login_as(admin),
    )
    link = await _link(db_session, "guest@example.com", "accept-invite")
    page = await client.get(link)
    assert page.status_code == 200, page.text
    assert 'action="/ui/accept-invite"' in page.text
    assert f'value="{_token(link)}"' in page.text
    form = {"token": _token(link), "full_name": "Guest", "password": "short"}
    refused = await client.post("/ui/accept-invite", data=form)
    assert refused.status_code == 422, refused.text
    assert "Password too short" in refused.text
    joined = await client.post("/ui/accept-invite", data=form | {"password": PASSWORD})
    assert joined.status_code == 303, joined.text
    assert joined.headers["location"] == "/ui/login?notice=joined"
    assert await _can_sign_in(client, "guest@example.com", PASSWORD)
    again = await client.post("/ui/accept-invite", data=form | {"password": PASSWORD})
    assert again.status_code == 422, again.text
    assert INVALID_LINK in again.text


async def test_a_password_is_reset_through_the_pages(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    user = await make_user()
    asked = await client.post("/ui/reset/request", data={"email": user.email})
    assert asked.status_code == 200, asked.text
    assert "a link to reset its password is on its way" in asked.text
    link = await _link(db_session, user.email, "reset")
    page = await client.get(link)
    assert 'action="/ui/reset"' in page.text
    done = await client.post("/ui/reset", data={"token": _token(link), "password": PASSWORD})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/ui/login?notice=password-set"
    assert await _can_sign_in(client, user.email, PASSWORD)


async def test_opening_a_verification_link_changes_nothing_until_the_button(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(verification_pending=True)
    await send_verification(db_session, settings, user)
    link = await _link(db_session, user.email, "verify-email")
    assert (await client.get(link)).status_code == 200
    assert (await client.get(link)).status_code == 200, "a mail scanner's visit uses nothing"
    await db_session.refresh(user)
    assert user.verification_pending
    done = await client.post("/ui/verify-email", data={"token": _token(link)})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/ui/login?notice=verified"
    await db_session.refresh(user)
    assert not user.verification_pending
