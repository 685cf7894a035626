"""Issue 13, finding 3: who may register, invitations, e-mail verification, password reset."""

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tandem.app import create_app
from tandem.identity.models import OneTimeToken, User
from tandem.identity.scopes import Role
from tandem.notifications.models import OutboxMessage
from tandem.settings import Settings
from tests.conftest import LoginAs, override_session, running
from tests.factories import TEST_PASSWORD, make_user

pytestmark = pytest.mark.anyio

PASSWORD = "a long enough password"
NEW_PASSWORD = "another long password"
PUBLIC_URL = "https://tandem.example.org"
VERIFY_FIRST = "Verify your e-mail address first"
INVALID_LINK = "This link is invalid, has expired or was already used; ask for a new one"
RESET_ANSWER = {
    "detail": "If an account uses this address, a link to reset its password is on its way"
}

Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def serve(settings: Settings, db_connection: AsyncConnection, db_session: AsyncSession) -> Serve:
    """The app with some settings changed, its sessions in the test's transaction."""

    @asynccontextmanager
    async def served(**values: Any) -> AsyncIterator[httpx.AsyncClient]:
        changed = Settings.model_validate(
            settings.model_dump() | {"public_url": PUBLIC_URL} | values
        )
        app = create_app(changed)
        override_session(app, db_connection)
        async with running(app) as client:
            yield client

    return served


async def mails_to(session: AsyncSession, address: str) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.recipient == address)
    return list((await session.scalars(query.order_by(OutboxMessage.created_at))).all())


def link_token(body: str, path: str) -> str:
    match = re.search(re.escape(f"{PUBLIC_URL}{path}?token=") + r"([A-Za-z0-9_-]+)", body)
    assert match, f"no {path} link in: {body}"
    return match.group(1)


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


REGISTRATION = {"email": "new@example.com", "password": PASSWORD, "full_name": "New"}


# --- the registration policy -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "detail"),
    [
        pytest.param(
            "invite",
            "Registration is by invitation only: ask an admin of your organization to invite you",
            id="invite",
        ),
        pytest.param("closed", "Registration is closed on this server", id="closed"),
    ],
)
async def test_registration_outside_open_is_403(
    serve: Serve, db_session: AsyncSession, policy: str, detail: str
) -> None:
    async with serve(registration=policy) as client:
        response = await client.post("/api/v1/auth/register", json=REGISTRATION)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": detail}
    assert await db_session.scalar(select(User).where(User.email == "new@example.com")) is None


@pytest.mark.parametrize(
    ("env", "registration", "verification"),
    [
        pytest.param("development", "open", "optional", id="development"),
        pytest.param("production", "invite", "required", id="production"),
    ],
)
def test_the_defaults_follow_the_environment(
    env: str, registration: str, verification: str
) -> None:
    settings = Settings(_env_file=None, env=env)  # type: ignore[call-arg]
    assert settings.registration_policy.value == registration
    assert settings.email_verification_policy.value == verification


async def test_development_registers_as_before(serve: Serve) -> None:
    async with serve() as client:
        registered = await client.post("/api/v1/auth/register", json=REGISTRATION)
        assert registered.status_code == 201, registered.text
        projects = await client.get("/api/v1/projects", headers=bearer(registered.json()))
    assert projects.status_code == 200, projects.text
    assert projects.json() == {"items": [], "count": 0}


async def test_the_welcome_mail_holds_only_the_name_made_harmless(
    serve: Serve, db_session: AsyncSession
) -> None:
    bait = "Your account is locked: call +1 555 0100 or visit https://evil.example/login now"
    body = REGISTRATION | {"full_name": bait, "organization_name": "Security Team of Acme"}
    async with serve() as client:
        assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    [mail] = await mails_to(db_session, "new@example.com")
    text = mail.subject + mail.body
    assert "Security Team" not in text
    assert "evil.example" not in text
    assert "555" not in text
    assert "://" not in text
    assert "Hello Your account is locked…," in mail.body


# --- invitations -----------------------------------------------------------------------------


async def test_an_admin_invites_and_the_invitee_sets_a_password(
    serve: Serve, login_as: LoginAs, db_session: AsyncSession
) -> None:
    admin = await make_user(Role.admin)
    async with serve(registration="invite") as client:
        invited = await client.post(
            "/api/v1/invitations",
            json={"email": "Guest@Example.com", "role": "reviewer"},
            headers=await login_as(admin),
        )
        assert invited.status_code == 201, invited.text
        assert invited.json()["email"] == "guest@example.com"
        assert invited.json()["role"] == "reviewer"
        [mail] = await mails_to(db_session, "guest@example.com")
        token = link_token(mail.body, "/ui/accept-invite")
        accept = {"token": token, "password": PASSWORD, "full_name": "Guest"}
        accepted = await client.post("/api/v1/auth/accept-invite", json=accept)
        assert accepted.status_code == 201, accepted.text
        user = accepted.json()["user"]
        assert (user["email"], user["role"]) == ("guest@example.com", "reviewer")
        assert user["organization_id"] == str(admin.organization_id)
        me = await client.get("/api/v1/users/me", headers=bearer(accepted.json()))
        assert "review:write" in me.json()["scopes"]
        again = await client.post("/api/v1/auth/accept-invite", json=accept)
        assert again.status_code == 422, again.text
        assert again.json()["detail"][0] == {
            "loc": ["body", "token"],
            "msg": INVALID_LINK,
            "type": "value_error",
        }
    stored = (await db_session.scalars(select(OneTimeToken))).one()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {stored.email, stored.purpose, stored.token_hash}


async def test_an_expired_invitation_is_refused(
    serve: Serve, login_as: LoginAs, db_session: AsyncSession
) -> None:
    admin = await make_user(Role.admin)
    async with serve() as client:
        await client.post(
            "/api/v1/invitations",
            json={"email": "late@example.com", "role": "member"},
            headers=await login_as(admin),
        )
        [mail] = await mails_to(db_session, "late@example.com")
        past = datetime.now(UTC) - timedelta(seconds=1)
        await db_session.execute(update(OneTimeToken).values(expires_at=past))
        accept = {
            "token": link_token(mail.body, "/ui/accept-invite"),
            "password": PASSWORD,
            "full_name": "Late",
        }
        response = await client.post("/api/v1/auth/accept-invite", json=accept)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"] == INVALID_LINK


@pytest.mark.parametrize(
    ("inviter_role", "body", "status"),
    [
        pytest.param(Role.coordinator, {"role": "member"}, 403, id="not-an-admin"),
        pytest.param(Role.admin, {"role": "owner"}, 422, id="unknown-role"),
        pytest.param(Role.admin, {"email": "taken@example.com"}, 409, id="already-a-member"),
    ],
)
async def test_invitations_are_refused_when_they_should_be(
    client: httpx.AsyncClient,
    login_as: LoginAs,
    db_session: AsyncSession,
    inviter_role: Role,
    body: dict[str, str],
    status: int,
) -> None:
    inviter = await make_user(inviter_role)
    await make_user(email="taken@example.com", organization_id=inviter.organization_id)
    response = await client.post(
        "/api/v1/invitations",
        json={"email": "someone@example.com", "role": "member"} | body,
        headers=await login_as(inviter),
    )
    assert response.status_code == status, response.text
    assert await mails_to(db_session, "someone@example.com") == []


async def test_a_narrowed_admin_cannot_invite_above_its_scopes(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    admin = await make_user(Role.admin)
    response = await client.post(
        "/api/v1/invitations",
        json={"email": "boss@example.com", "role": "admin"},
        headers=await login_as(admin, {"users:admin"}),
    )
    assert response.status_code == 403, response.text
    assert response.json()["detail"].startswith("Cannot give the role admin")


# --- e-mail verification ---------------------------------------------------------------------


async def test_required_verification_allows_only_me_until_the_link_is_followed(
    serve: Serve, db_session: AsyncSession
) -> None:
    async with serve(email_verification="required") as client:
        registered = await client.post("/api/v1/auth/register", json=REGISTRATION)
        assert registered.status_code == 201, registered.text
        headers = bearer(registered.json())
        me = await client.get("/api/v1/users/me", headers=headers)
        assert me.status_code == 200, me.text
        assert (me.json()["email"], me.json()["role"]) == ("new@example.com", "admin")
        for method, path in (("GET", "/api/v1/projects"), ("POST", "/api/v1/api-keys")):
            refused = await client.request(method, path, headers=headers, json={})
            assert refused.status_code == 403, path
            assert refused.json() == {"detail": VERIFY_FIRST}
        [mail] = await mails_to(db_session, "new@example.com")
        token = link_token(mail.body, "/ui/verify-email")
        verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
        assert verified.json()["email"] == "new@example.com"
        assert (await client.get("/api/v1/projects", headers=headers)).status_code == 200
        again = await client.post("/api/v1/auth/verify-email", json={"token": token})
        assert again.status_code == 422, again.text
        assert again.json()["detail"] == [
            {"loc": ["body", "token"], "msg": INVALID_LINK, "type": "value_error"}
        ]


async def test_accounts_an_admin_made_need_no_verification(serve: Serve, login_as: LoginAs) -> None:
    admin = await make_user(Role.admin)
    async with serve(email_verification="required") as client:
        body = {"email": "made@example.com", "password": PASSWORD, "full_name": "Made"}
        created = await client.post("/api/v1/users", json=body, headers=await login_as(admin))
        assert created.status_code == 201, created.text
        assert (created.json()["email"], created.json()["role"]) == ("made@example.com", "member")
        login = await client.post(
            "/api/v1/auth/login", json={"email": "made@example.com", "password": PASSWORD}
        )
        projects = await client.get("/api/v1/projects", headers=bearer(login.json()))
    assert projects.status_code == 200, projects.text
    assert projects.json() == {"items": [], "count": 0}


# --- password reset ----------------------------------------------------------------------------


async def test_a_reset_answers_alike_whether_or_not_the_address_exists(
    serve: Serve, db_session: AsyncSession
) -> None:
    user = await make_user()
    async with serve() as client:
        known = await client.post("/api/v1/auth/password-reset", json={"email": user.email})
        unknown = await client.post(
            "/api/v1/auth/password-reset", json={"email": "nobody@example.com"}
        )
    for response in (known, unknown):
        assert response.status_code == 202, response.text
        assert response.json() == RESET_ANSWER
    assert set(known.headers) - {"x-request-id"} == set(unknown.headers) - {"x-request-id"}
    assert len(await mails_to(db_session, user.email)) == 1
    assert await mails_to(db_session, "nobody@example.com") == []


async def test_a_reset_sets_the_password_and_ends_every_login(
    serve: Serve, db_session: AsyncSession
) -> None:
    user = await make_user()
    old = {"email": user.email, "password": TEST_PASSWORD}
    async with serve() as client:
        before = (await client.post("/api/v1/auth/login", json=old)).json()
        await client.post("/api/v1/auth/password-reset", json={"email": user.email})
        [mail] = await mails_to(db_session, user.email)
        token = link_token(mail.body, "/ui/reset")
        confirm = {"token": token, "password": NEW_PASSWORD}
        done = await client.post("/api/v1/auth/password-reset/confirm", json=confirm)
        assert done.status_code == 204, done.text
        assert (await client.get("/api/v1/users/me", headers=bearer(before))).status_code == 401
        stale = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
        )
        assert stale.status_code == 401, stale.text
        assert stale.json() == {"detail": "This login was signed out; sign in again"}
        assert (await client.post("/api/v1/auth/login", json=old)).status_code == 401
        new = old | {"password": NEW_PASSWORD}
        assert (await client.post("/api/v1/auth/login", json=new)).status_code == 200
        reused = await client.post(
            "/api/v1/auth/password-reset/confirm", json=confirm | {"password": "a third password"}
        )
        assert reused.status_code == 422, reused.text
        assert reused.json()["detail"][0]["msg"] == INVALID_LINK


async def test_a_reset_needs_a_good_password(serve: Serve, db_session: AsyncSession) -> None:
    user = await make_user()
    async with serve() as client:
        await client.post("/api/v1/auth/password-reset", json={"email": user.email})
        [mail] = await mails_to(db_session, user.email)
        token = link_token(mail.body, "/ui/reset")
        short = await client.post(
            "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "short"}
        )
        assert short.status_code == 422, short.text
        assert short.json()["detail"][0]["loc"] == ["body", "password"]
        fine = await client.post(
            "/api/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
        )
        assert fine.status_code == 204, "a refused password does not use the link up"
