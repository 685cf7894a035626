"""Principals kept between requests (identity/credential_cache.py) never outlive a change.

Each test first uses a credential several times, so that it is served from the cache, then
changes what it resolves to, through the API or straight in the database, and expects the
very next request to see the change."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.identity.credential_cache import CredentialCache, SharedEpoch
from tandem.identity.models import ApiKey, User
from tandem.identity.scopes import Role
from tests.conftest import LoginAs
from tests.factories import TEST_PASSWORD, make_user

pytestmark = pytest.mark.anyio


async def _served_repeatedly(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    for _ in range(3):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text


async def test_a_user_deactivated_in_the_database_is_refused_at_the_next_request(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    user = await make_user()
    headers = await login_as(user)
    await _served_repeatedly(client, "/api/v1/users/me", headers)

    user.is_active = False
    await db_session.flush()

    refused = await client.get("/api/v1/users/me", headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == "User is inactive or no longer exists"


async def test_an_admin_demoted_by_a_bulk_update_loses_admin_scopes_at_the_next_request(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    admin = await make_user(Role.admin)
    headers = await login_as(admin)
    await _served_repeatedly(client, "/api/v1/audit", headers)

    await db_session.execute(update(User).where(User.id == admin.id).values(role=Role.member.value))

    refused = await client.get("/api/v1/audit", headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"].startswith("Missing required scope")


async def test_a_key_revoked_by_a_bulk_update_is_refused_at_the_next_request(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    admin = await make_user(Role.admin)
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "ci", "scopes": ["agent:read"]},
        headers=await login_as(admin),
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    await _served_repeatedly(client, "/api/v1/agents", key)

    await db_session.execute(
        update(ApiKey)
        .where(ApiKey.id == uuid.UUID(created.json()["id"]))
        .values(revoked_at=datetime.now(UTC))
    )

    refused = await client.get("/api/v1/agents", headers=key)
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == "API key revoked"


async def test_a_login_signed_out_through_the_api_is_refused_at_the_next_request(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user()
    login = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": TEST_PASSWORD}
    )
    assert login.status_code == 200, login.text
    tokens = login.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    await _served_repeatedly(client, "/api/v1/users/me", headers)

    signed_out = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert signed_out.status_code == 204, signed_out.text

    refused = await client.get("/api/v1/users/me", headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == "This login was signed out; sign in again"


async def test_nothing_is_served_from_the_cache_while_redis_does_not_answer() -> None:
    cache = CredentialCache(SharedEpoch("redis://127.0.0.1:1/0"))
    try:
        stamp = await cache.stamp()
        cache.put("key", stamp, "principal", None)
        assert stamp is None
        assert cache.get("key", stamp, datetime.now(UTC)) is None
    finally:
        cache.close()


async def test_users_me_shows_a_changed_name_and_role_at_the_next_request(
    client: httpx.AsyncClient, login_as: LoginAs, db_session: AsyncSession
) -> None:
    """/users/me answers from the principal: the change must reach it like a revocation."""
    admin = await make_user(Role.admin, full_name="Ada Admin")
    headers = await login_as(admin)
    await _served_repeatedly(client, "/api/v1/users/me", headers)

    renamed = await client.patch(
        f"/api/v1/users/{admin.id}", json={"full_name": "Ada Lovelace"}, headers=headers
    )
    assert renamed.status_code == 200, renamed.text
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["full_name"] == (
        "Ada Lovelace"
    )

    await db_session.execute(
        update(User).where(User.id == admin.id).values(role=Role.member.value, email="a@x.org")
    )
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert (me["role"], me["email"]) == ("member", "a@x.org")
    assert "users:admin" not in me["scopes"]


async def test_users_me_with_an_api_key_is_the_keys_creator(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    user = await make_user(full_name="Key Maker")
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "ci", "scopes": ["jobs:read"]},
        headers=await login_as(user),
    )
    key = {"X-API-Key": created.json()["key"]}
    for _ in range(2):
        me = await client.get("/api/v1/users/me", headers=key)
        assert me.status_code == 200, me.text
        assert me.json() == {
            "id": str(user.id),
            "email": user.email,
            "full_name": "Key Maker",
            "role": "member",
            "organization_id": str(user.organization_id),
            "is_active": True,
            "created_at": me.json()["created_at"],
            "scopes": ["jobs:read"],
        }


class _CountedGets:
    """Redis's own GET, counted; `hold` keeps the reply of the next one back until released,
    as if it were still on its way (it has reached Redis and been answered)."""

    def __init__(self, epoch: SharedEpoch) -> None:
        self.real = epoch._redis.get
        self.count = 0
        self.hold: asyncio.Event | None = None
        epoch._redis.get = self  # type: ignore[method-assign]

    async def __call__(self, key: str) -> Any:
        self.count += 1
        reply = await self.real(key)
        if self.hold is not None:
            held, self.hold = self.hold, None
            await held.wait()
        return reply


async def test_concurrent_reads_of_the_epoch_share_their_gets(redis_url: str) -> None:
    epoch = SharedEpoch(redis_url)
    try:
        await epoch.current()  # the token exists (a first read sets it: a second GET)
        gets = _CountedGets(epoch)
        tokens = await asyncio.gather(*(epoch.current() for _ in range(50)))
        # The first call's, and one for the 49 made while it was under way.
        assert gets.count == 2
        assert len(set(tokens)) == 1
        assert tokens[0] is not None
        # A later call reads again: nothing is answered from memory.
        assert await epoch.current() == tokens[0]
        assert gets.count == 3
    finally:
        epoch.close()


async def test_a_read_in_flight_when_the_epoch_changes_never_answers_a_later_call(
    redis_url: str,
) -> None:
    """The guarantee the sharing must keep: a call made after a change committed (and the
    epoch replaced) is answered by a GET sent after it, never by one already under way."""
    epoch, other_process = SharedEpoch(redis_url), SharedEpoch(redis_url)
    try:
        before = await epoch.current()
        gets = _CountedGets(epoch)
        gets.hold = asyncio.Event()
        held = gets.hold
        in_flight = asyncio.create_task(epoch.current())
        while gets.count == 0:  # its GET has been answered by Redis, the reply held back
            await asyncio.sleep(0.001)
        await other_process.bump()  # a logout in another process
        later = asyncio.create_task(epoch.current())
        await asyncio.sleep(0.01)
        held.set()
        assert await in_flight == before
        after = await later
        assert after is not None
        assert after != before
        assert gets.count == 2
    finally:
        epoch.close()
        other_process.close()


async def test_a_caller_that_goes_away_does_not_cancel_the_read_of_the_others(
    redis_url: str,
) -> None:
    epoch = SharedEpoch(redis_url)
    try:
        gets = _CountedGets(epoch)
        gets.hold = asyncio.Event()
        held = gets.hold
        first = asyncio.create_task(epoch.current())  # sends the GET
        while gets.count == 0:
            await asyncio.sleep(0.001)
        leaving = asyncio.create_task(epoch.current())  # these wait for the next one
        staying = asyncio.create_task(epoch.current())
        await asyncio.sleep(0.01)
        first.cancel()
        leaving.cancel()
        held.set()
        assert await staying is not None
        for gone in (first, leaving):
            with pytest.raises(asyncio.CancelledError):
                await gone
    finally:
        epoch.close()
