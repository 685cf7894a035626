"""Races between real concurrent requests, each on its own connection, with real commits."""

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import select

from tandem.app import create_app
from tandem.identity.models import LoginSession, User
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
