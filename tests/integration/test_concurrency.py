"""Races between real concurrent requests, each on its own connection, with real commits."""

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import select

from tandem.app import create_app
from tandem.db import transaction_scope
from tandem.errors import Conflict
from tandem.identity.models import LoginSession, Organization, User
from tandem.identity.principal import Principal, PrincipalKind
from tandem.identity.schemas import UserUpdateIn
from tandem.identity.scopes import Role, scopes_for
from tandem.identity.service import LAST_ADMIN, update_user
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running

pytestmark = pytest.mark.anyio

PASSWORD = "a long enough password"


@pytest.fixture
async def live_client(
    committed_db: CommittedDatabase, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the committed database, with no session override: real transactions."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=committed_db.url,
        data_dir=tmp_path,
        rate_limit_register="1000/minute",
    )
    async with running(create_app(settings)) as client:
        yield client


async def concurrently(*requests: object) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def send(request: object) -> None:
        responses.append(await request)  # type: ignore[misc]

    async with anyio.create_task_group() as group:
        for request in requests:
            group.start_soon(send, request)
    return responses


async def test_two_registrations_of_one_email_make_one_user(
    live_client: httpx.AsyncClient, committed_db: CommittedDatabase
) -> None:
    body = {"email": "race@example.com", "password": PASSWORD, "full_name": "Racer"}
    responses = await concurrently(
        *(live_client.post("/api/v1/auth/register", json=body) for _ in range(3))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409]
    assert [r.json() for r in responses if r.status_code == 409] == [
        {"detail": "Email already registered"}
    ] * 2
    async with committed_db.sessionmaker() as session:
        users = (await session.scalars(select(User).where(User.email == "race@example.com"))).all()
    assert len(users) == 1


async def test_two_refreshes_of_one_token_at_once_end_the_login(
    live_client: httpx.AsyncClient, committed_db: CommittedDatabase
) -> None:
    body = {"email": "twice@example.com", "password": PASSWORD, "full_name": "Twice"}
    tokens = (await live_client.post("/api/v1/auth/register", json=body)).json()
    refresh = {"refresh_token": tokens["refresh_token"]}
    responses = await concurrently(
        live_client.post("/api/v1/auth/refresh", json=refresh),
        live_client.post("/api/v1/auth/refresh", json=refresh),
    )
    assert sorted(r.status_code for r in responses) == [200, 401]
    (loser,) = [r for r in responses if r.status_code == 401]
    assert "already used" in loser.json()["detail"]
    (winner,) = [r for r in responses if r.status_code == 200]
    # The reuse revoked the login, so what the winner got is dead too: nobody holds a token.
    after = await live_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": winner.json()["refresh_token"]}
    )
    assert after.status_code == 401
    async with committed_db.sessionmaker() as session:
        login = await session.scalar(select(LoginSession))
    assert login is not None
    assert login.revoked_reason == "refresh_token_reused"


async def _two_admins(committed_db: CommittedDatabase) -> tuple[User, User]:
    async with committed_db.sessionmaker() as session, session.begin():
        organization = Organization(name="Two admins")
        session.add(organization)
        await session.flush()
        admins = tuple(
            User(
                organization_id=organization.id,
                email=f"admin{n}@example.com",
                password_hash="-",
                full_name=f"Admin {n}",
                role=Role.admin.value,
            )
            for n in (1, 2)
        )
        session.add_all(admins)
    return admins  # type: ignore[return-value]


def _as_admin(user: User) -> Principal:
    return Principal(
        kind=PrincipalKind.user,
        id=user.id,
        user_id=user.id,
        organization_id=user.organization_id,
        scopes=scopes_for(Role.admin),
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(UserUpdateIn(role=Role.member), id="demote"),
        pytest.param(UserUpdateIn(is_active=False), id="deactivate"),
    ],
)
async def test_two_admins_removing_each_other_at_once_leave_one(
    committed_db: CommittedDatabase, change: UserUpdateIn
) -> None:
    """The first change is made and not yet committed when the second starts: the second
    must wait for it and then see that it would leave no admin. (It is given a moment to
    get ahead; with nothing stopping it, it would.)"""
    first, second = await _two_admins(committed_db)
    first_changed, second_done = anyio.Event(), anyio.Event()
    outcomes: dict[str, str] = {}

    async def remove(by: User, target: User, name: str) -> None:
        async with committed_db.sessionmaker() as session:
            try:
                async with transaction_scope(session):
                    if name == "second":
                        await first_changed.wait()
                    await update_user(session, _as_admin(by), target.id, change)
                    if name == "first":
                        first_changed.set()
                        with anyio.move_on_after(1):
                            await second_done.wait()
                outcomes[name] = "changed"
            except Conflict as exc:
                outcomes[name] = exc.detail
            finally:
                if name == "second":
                    second_done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(remove, first, second, "first")
        group.start_soon(remove, second, first, "second")

    assert outcomes == {"first": "changed", "second": LAST_ADMIN}
    async with committed_db.sessionmaker() as session:
        admins = await session.scalars(
            select(User.email).where(
                User.organization_id == first.organization_id,
                User.role == Role.admin.value,
                User.is_active.is_(True),
            )
        )
        assert admins.all() == [first.email]


async def test_two_admins_demoting_each_other_over_http_leave_one(
    live_client: httpx.AsyncClient, committed_db: CommittedDatabase
) -> None:
    body = {"email": "one@example.com", "password": PASSWORD, "full_name": "One"}
    one = (await live_client.post("/api/v1/auth/register", json=body)).json()
    one_headers = {"Authorization": f"Bearer {one['access_token']}"}
    other = {"email": "two@example.com", "password": PASSWORD, "full_name": "Two", "role": "admin"}
    two = (await live_client.post("/api/v1/users", json=other, headers=one_headers)).json()
    login = {"email": "two@example.com", "password": PASSWORD}
    two_token = (await live_client.post("/api/v1/auth/login", json=login)).json()["access_token"]
    two_headers = {"Authorization": f"Bearer {two_token}"}
    responses = await concurrently(
        live_client.patch(
            f"/api/v1/users/{two['id']}", json={"role": "member"}, headers=one_headers
        ),
        live_client.patch(
            f"/api/v1/users/{one['user']['id']}", json={"role": "member"}, headers=two_headers
        ),
    )
    # The loser is refused either way: 409 (it waited, then found itself the last admin) or
    # 403 (it began after the winner had demoted it).
    assert sorted(r.status_code for r in responses) in ([200, 403], [200, 409])
    async with committed_db.sessionmaker() as session:
        roles = await session.scalars(select(User.role).order_by(User.email))
        assert sorted(roles.all()) == ["admin", "member"]
