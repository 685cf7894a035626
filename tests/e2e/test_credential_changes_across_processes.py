"""Two `tandem serve` processes on one database and one Redis, as `--workers 2` runs them.

Each process keeps the principals it resolved (identity/credential_cache.py); a credential
changed through one process must be refused by the other at its very next request."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    UNLIMITED_REGISTRATION,
    ServerProcess,
    clean_environment,
    wait_until_serving,
)

pytestmark = pytest.mark.anyio

PASSWORD = "a long enough password"


async def _register(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    body = {"email": email, "password": PASSWORD, "full_name": email.split("@")[0]}
    registered = await client.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    tokens: dict[str, Any] = registered.json()
    return tokens


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_change_made_through_one_process_is_refused_by_the_other_at_once(
    database: str,
    start_server: Callable[..., ServerProcess],
    wait_until: Callable[..., Awaitable[Any]],
    redis_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Any,
) -> None:
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    else:
        url = request.getfixturevalue("create_postgres_database")()
    env = clean_environment(
        TANDEM_DATABASE_URL=url,
        TANDEM_REDIS_URL=redis_url,
        TANDEM_JWT_SECRET="s" * 48,
        **UNLIMITED_REGISTRATION,
    )
    first = start_server("--migrate", env=env)
    await wait_until_serving(first, wait_until)
    second = start_server(env=env)
    await wait_until_serving(second, wait_until)

    async with (
        httpx.AsyncClient(base_url=first.base_url) as a,
        httpx.AsyncClient(base_url=second.base_url) as b,
    ):
        admin = await _register(a, "ann@example.com")
        admin_bearer = {"Authorization": f"Bearer {admin['access_token']}"}
        created = await a.post(
            "/api/v1/api-keys", json={"name": "ci", "scopes": ["agent:read"]}, headers=admin_bearer
        )
        assert created.status_code == 201, created.text
        key = {"X-API-Key": created.json()["key"]}
        invited = await a.post(
            "/api/v1/users",
            json={"email": "bob@example.com", "password": PASSWORD, "full_name": "Bob"},
            headers=admin_bearer,
        )
        assert invited.status_code == 201, invited.text
        bob_id = invited.json()["id"]
        bob_login = await a.post(
            "/api/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD}
        )
        bob = {"Authorization": f"Bearer {bob_login.json()['access_token']}"}

        # Resolved, and so kept, by the first process, several times over.
        for _ in range(3):
            assert (await a.get("/api/v1/agents", headers=key)).status_code == 200
            assert (await a.get("/api/v1/users/me", headers=admin_bearer)).status_code == 200
            assert (await a.get("/api/v1/users/me", headers=bob)).status_code == 200

        # Changed through the second process...
        deactivated = await b.patch(
            f"/api/v1/users/{bob_id}", json={"is_active": False}, headers=admin_bearer
        )
        assert deactivated.status_code == 200, deactivated.text
        revoked = await b.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=admin_bearer)
        assert revoked.status_code == 204, revoked.text
        logout = await b.post("/api/v1/auth/logout", json={"refresh_token": admin["refresh_token"]})
        assert logout.status_code == 204, logout.text

        # ...and refused by the first at its next request.
        after_deactivation = await a.get("/api/v1/users/me", headers=bob)
        assert after_deactivation.status_code == 401, after_deactivation.text
        assert after_deactivation.json()["detail"] == "User is inactive or no longer exists"
        after_revoke = await a.get("/api/v1/agents", headers=key)
        assert after_revoke.status_code == 401, after_revoke.text
        assert after_revoke.json()["detail"] == "API key revoked"
        after_logout = await a.get("/api/v1/users/me", headers=admin_bearer)
        assert after_logout.status_code == 401, after_logout.text
        assert after_logout.json()["detail"] == "This login was signed out; sign in again"
