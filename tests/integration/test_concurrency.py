"""Races between real concurrent requests, each on its own connection, with real commits."""

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import psycopg
import pytest
from fastapi import Request
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tandem.app import create_app
from tandem.db import read_connection, transaction_scope
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
    assert after.status_code == 401, after.text
    assert after.json() == {"detail": "This login was signed out; sign in again"}
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


# --- read requests on the read-only engine (issue 14) ----------------------------------------


@pytest.fixture
async def busy_client(
    committed_db: CommittedDatabase, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The live app with its job executor running and no budget in the way."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=committed_db.url,
        data_dir=tmp_path,
        rate_limit_jobs="100000/minute",
        job_poll_seconds=0.05,
    )
    async with running(create_app(settings)) as client:
        yield client


async def _signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": "busy@example.com", "password": PASSWORD, "full_name": "Busy"}
    registered = await client.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    return {"Authorization": f"Bearer {registered.json()['access_token']}"}


async def test_many_concurrent_writes_and_reads_all_succeed(busy_client: httpx.AsyncClient) -> None:
    """Reads never queue on SQLite's write lock and writes wait for it (busy timeout) instead
    of failing: with the executor writing too, no request sees "database is locked"."""
    headers = await _signed_in(busy_client)
    writes = [
        busy_client.post("/api/v1/jobs", json={"task": "echo"}, headers=headers) for _ in range(25)
    ]
    reads = [busy_client.get("/api/v1/jobs", headers=headers) for _ in range(25)] + [
        busy_client.get("/api/v1/users/me", headers=headers) for _ in range(25)
    ]
    responses = await concurrently(*writes, *reads)
    assert sorted({r.status_code for r in responses}) == [200, 202], [
        r.text for r in responses if r.status_code not in (200, 202)
    ]
    listed = await busy_client.get("/api/v1/jobs?limit=100", headers=headers)
    assert listed.json()["count"] == 25


@contextmanager
def writes_locked(committed_db: CommittedDatabase) -> Iterator[None]:
    """Another connection holds what writers need: SQLite's write lock; on PostgreSQL an
    EXCLUSIVE lock on the tables read here (it blocks writes, not plain reads)."""
    if committed_db.is_postgresql:
        url = make_url(committed_db.url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
            connection.execute("LOCK TABLE users, login_sessions, jobs IN EXCLUSIVE MODE")
            yield
            connection.rollback()
        return
    writer = sqlite3.connect(make_url(committed_db.url).database or "", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        writer.execute("ROLLBACK")
        writer.close()


async def test_a_read_request_does_not_wait_for_writers(
    busy_client: httpx.AsyncClient, committed_db: CommittedDatabase
) -> None:
    """While another connection holds the write lock, a GET still answers (before, on
    SQLite every request began IMMEDIATE: it waited out the busy timeout, then failed)."""
    headers = await _signed_in(busy_client)
    with writes_locked(committed_db):
        me = await busy_client.get("/api/v1/users/me", headers=headers)
        jobs = await busy_client.get("/api/v1/jobs", headers=headers)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "busy@example.com"
    assert jobs.json() == {"items": [], "count": 0}


async def test_the_read_only_engine_refuses_writes(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    """A GET route that wrote would fail loudly, on both databases, rather than write."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=committed_db.url, data_dir=tmp_path, worker_enabled=False
    )
    app = create_app(settings)
    write = insert(Organization).values(id=uuid.uuid4(), name="never", **_timestamps())
    async with running(app), app.state.read_sessionmaker() as session:
        with pytest.raises(DBAPIError):
            await session.execute(write)
        # The connection a read route opens itself (on a SQLite file, a synchronous one).
        async with read_connection(Request({"type": "http", "app": app})) as connection:
            with pytest.raises(DBAPIError):
                await connection.execute(write)
    async with committed_db.sessionmaker() as session:
        assert (
            await session.scalar(select(Organization).where(Organization.name == "never")) is None
        )


async def test_read_requests_give_their_connections_back(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    """A GET's session is closed at once rather than in a task of its own, and a read
    route's connection likewise: none stays checked out once the responses are in."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=committed_db.url, data_dir=tmp_path, worker_enabled=False
    )
    app = create_app(settings)
    async with running(app) as client:
        headers = await _signed_in(client)
        paths = ["/api/v1/organizations/current", "/api/v1/jobs", "/api/v1/api-keys"]
        responses = await concurrently(
            *(client.get(path, headers=headers) for path in paths for _ in range(10))
        )
        assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
        assert app.state.read_engine.pool.checkedout() == 0
        assert app.state.direct_reads.checked_out == 0


def _timestamps() -> dict[str, datetime]:
    now = datetime.now(UTC)
    return {"created_at": now, "updated_at": now}


async def test_a_revoked_key_and_a_signed_out_login_fail_at_the_next_read(
    busy_client: httpx.AsyncClient,
) -> None:
    """On the read-only path too: nothing about a principal is remembered between requests."""
    body = {"email": "gone@example.com", "password": PASSWORD, "full_name": "Gone"}
    tokens = (await busy_client.post("/api/v1/auth/register", json=body)).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    created = await busy_client.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["jobs:read"]}, headers=bearer
    )
    key = {"X-API-Key": created.json()["key"]}
    listed = await busy_client.get("/api/v1/jobs", headers=key)
    assert listed.json() == {"items": [], "count": 0}
    me = await busy_client.get("/api/v1/users/me", headers=bearer)
    assert me.json()["email"] == "gone@example.com"

    revoked = await busy_client.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=bearer)
    assert revoked.status_code == 204, revoked.text
    refused = await busy_client.get("/api/v1/jobs", headers=key)
    assert (refused.status_code, refused.json()) == (401, {"detail": "API key revoked"})

    logout = {"refresh_token": tokens["refresh_token"]}
    assert (await busy_client.post("/api/v1/auth/logout", json=logout)).status_code == 204
    signed_out = await busy_client.get("/api/v1/users/me", headers=bearer)
    assert (signed_out.status_code, signed_out.json()) == (
        401,
        {"detail": "This login was signed out; sign in again"},
    )
