"""Identity over real HTTP: a `tandem serve` process on SQLite with no TANDEM_ settings.

Each test starts one server and walks through a whole story on it (a start costs ~2 s).
Tokens minted by hand are signed with the secret the server generated into its working
directory (`jwt-secret`), so a refusal proves the server checked the claim under test and
not merely the signature.
"""

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.conftest import ServerProcess, wait_until_serving

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"
HTTP_TIMEOUT = 30.0  # argon2 on a busy CI machine can take seconds; httpx's default is 5 s
ALL_SCOPES = sorted(
    [
        "agent:read",
        "agent:run",
        "agent:admin",
        "jobs:read",
        "jobs:write",
        "review:read",
        "review:write",
        "projects:read",
        "projects:write",
        "schedule:read",
        "schedule:write",
        "schedule:admin",
        "users:admin",
        "jobs:admin",
        "webhooks:admin",
    ]
)
USER_FIELDS = {"id", "email", "full_name", "role", "organization_id", "is_active", "created_at"}
TOKEN_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in", "scope"}

StartServer = Callable[..., ServerProcess]
WaitUntil = Callable[..., Awaitable[Any]]


async def serving(start_server: StartServer, wait_until: WaitUntil) -> ServerProcess:
    server = start_server()
    await wait_until_serving(server, wait_until)
    return server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def utc_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), f"{value} is not in UTC"
    return parsed


async def register(
    client: httpx.AsyncClient, email: str, organization: str, full_name: str = "Ada Lovelace"
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": full_name,
            "organization_name": organization,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_user(
    client: httpx.AsyncClient, admin_token: str, email: str, role: str
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/users",
        headers=bearer(admin_token),
        json={"email": email, "password": PASSWORD, "full_name": "Grace Hopper", "role": role},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login_json(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- logins: register, me, login, refresh rotation and reuse, logout ---------------------------


async def test_a_login_lives_through_register_login_refresh_reuse_and_logout(
    start_server: StartServer, wait_until: WaitUntil
) -> None:
    server = await serving(start_server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as client:
        # Register: the first user of a new organization is its admin.
        registered = await register(client, "ada@example.com", "Analytical Engines")
        user = registered["user"]
        assert set(registered) == {
            "user",
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
        }
        assert set(user) == USER_FIELDS, "the user never carries a password or its hash"
        assert user["email"] == "ada@example.com"
        assert user["full_name"] == "Ada Lovelace"
        assert user["role"] == "admin"
        assert user["is_active"] is True
        assert str(uuid.UUID(user["id"])) == user["id"]
        assert str(uuid.UUID(user["organization_id"])) == user["organization_id"]
        utc_timestamp(user["created_at"])
        assert registered["token_type"] == "bearer"
        claims = unverified_claims(registered["access_token"])
        assert claims["exp"] - claims["iat"] == registered["expires_in"] > 0
        assert (claims["sub"], claims["org"]) == (user["id"], user["organization_id"])
        assert (claims["type"], claims["iss"], claims["aud"]) == ("access", "tandem", "tandem")

        # The access token is a login: /users/me answers with the user and every admin scope.
        me = await client.get("/api/v1/users/me", headers=bearer(registered["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json() == {**user, "scopes": ALL_SCOPES}
        organization = await client.get(
            "/api/v1/organizations/current", headers=bearer(registered["access_token"])
        )
        assert organization.json()["id"] == user["organization_id"]
        assert organization.json()["name"] == "Analytical Engines"

        # Login with JSON: a fresh pair carrying every scope of the role.
        by_json = await login_json(client, "ada@example.com")
        assert set(by_json) == TOKEN_FIELDS
        assert by_json["token_type"] == "bearer"
        assert by_json["scope"].split() == ALL_SCOPES
        assert by_json["refresh_token"] != registered["refresh_token"]

        # Login with the OAuth2 form, narrowed: a member asking for users:admin does not get it.
        member = await create_user(
            client, registered["access_token"], "grace@example.com", "member"
        )
        assert (member["role"], member["organization_id"]) == ("member", user["organization_id"])
        narrowed = await client.post(
            "/api/v1/auth/login",
            data={
                "username": "grace@example.com",
                "password": PASSWORD,
                "scope": "projects:read users:admin no:such-scope",
            },
        )
        assert narrowed.status_code == 200, narrowed.text
        assert narrowed.json()["scope"] == "projects:read"
        assert unverified_claims(narrowed.json()["access_token"])["scopes"] == ["projects:read"]
        member_token = narrowed.json()["access_token"]
        member_me = await client.get("/api/v1/users/me", headers=bearer(member_token))
        assert member_me.json()["scopes"] == ["projects:read"]
        forbidden = await client.get("/api/v1/users", headers=bearer(member_token))
        assert forbidden.status_code == 403, forbidden.text
        assert "users:admin" in forbidden.json()["detail"]
        cannot_write = await client.post(
            "/api/v1/projects", headers=bearer(member_token), json={"name": "Not mine"}
        )
        assert cannot_write.status_code == 403, cannot_write.text
        assert "projects:write" in cannot_write.json()["detail"]

        # Wrong password and unknown e-mail: the same 401, the same words.
        wrong = await client.post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": "not the password"}
        )
        unknown = await client.post(
            "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
        )
        assert (wrong.status_code, unknown.status_code) == (401, 401)
        assert wrong.json() == unknown.json() == {"detail": "Incorrect email or password"}

        # Refresh: a new pair; the new access token works.
        first_refresh = registered["refresh_token"]
        rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": first_refresh})
        assert rotated.status_code == 200, rotated.text
        pair = rotated.json()
        assert set(pair) == TOKEN_FIELDS
        assert pair["refresh_token"] != first_refresh
        assert pair["access_token"] != registered["access_token"]
        assert pair["scope"].split() == ALL_SCOPES
        same_login = unverified_claims(pair["access_token"])["sid"]
        assert same_login == unverified_claims(registered["access_token"])["sid"]
        assert (await client.get("/api/v1/users/me", headers=bearer(pair["access_token"]))).json()[
            "id"
        ] == user["id"]

        # The old refresh token presented again is refused, and that revokes the whole login.
        reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": first_refresh})
        assert reused.status_code == 401, reused.text
        assert "already used" in reused.json()["detail"]
        newest_refresh = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert newest_refresh.status_code == 401, newest_refresh.text
        assert "sign in again" in newest_refresh.json()["detail"]
        for token in (pair["access_token"], registered["access_token"]):
            refused = await client.get("/api/v1/users/me", headers=bearer(token))
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "sign in again" in refused.json()["detail"]

        # Other logins of the same user are untouched by that revocation.
        still = await client.get("/api/v1/users/me", headers=bearer(by_json["access_token"]))
        assert still.status_code == 200, still.text
        assert still.json()["id"] == user["id"]

        # Logout: 204 with no body; that login's refresh and access tokens stop working.
        logout = await client.post(
            "/api/v1/auth/logout", json={"refresh_token": by_json["refresh_token"]}
        )
        assert logout.status_code == 204, logout.text
        assert logout.content == b""
        after = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": by_json["refresh_token"]}
        )
        assert after.status_code == 401, after.text
        assert "sign in again" in after.json()["detail"]
        signed_out = await client.get("/api/v1/users/me", headers=bearer(by_json["access_token"]))
        assert signed_out.status_code == 401, signed_out.text
        assert signed_out.json() == {"detail": "This login was signed out; sign in again"}

        # A fresh login still works after all of that.
        again = await login_json(client, "ada@example.com")
        back = await client.get("/api/v1/users/me", headers=bearer(again["access_token"]))
        assert back.json()["id"] == user["id"]


# --- access tokens the server must refuse -----------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    """alg "none": a header and payload, and an empty signature."""
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}."


async def test_forged_expired_and_misdirected_access_tokens_are_refused(
    start_server: StartServer, wait_until: WaitUntil
) -> None:
    server = await serving(start_server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as client:
        admin = await register(client, "root@example.com", "Forgeries Inc")
        member = await create_user(client, admin["access_token"], "mallory@example.com", "member")
        member_login = await login_json(client, "mallory@example.com")
        secret = (server.workdir / "jwt-secret").read_text().strip()
        assert secret, "the development server generates its secret into the working directory"

        def claims_for(token: str, **overrides: Any) -> dict[str, Any]:
            real = unverified_claims(token)
            now = datetime.now(UTC)
            claims = {
                "sub": real["sub"],
                "org": real["org"],
                "sid": real["sid"],
                "scopes": real["scopes"],
                "type": "access",
                "iat": int(now.timestamp()),
                "exp": int((now + timedelta(minutes=5)).timestamp()),
                "jti": uuid.uuid4().hex,
                "iss": "tandem",
                "aud": "tandem",
            }
            claims.update(overrides)
            return claims

        def mint(token: str, key: str = secret, algorithm: str = "HS256", **overrides: Any) -> str:
            return jwt.encode(claims_for(token, **overrides), key, algorithm=algorithm)

        async def me(token: str) -> httpx.Response:
            return await client.get("/api/v1/users/me", headers=bearer(token))

        # Control: a hand-minted token with the real claims and key is accepted, so every
        # refusal below is caused by the one claim (or signature) that differs.
        admin_token = admin["access_token"]
        control = await me(mint(admin_token))
        assert control.status_code == 200, control.text
        assert control.json()["id"] == admin["user"]["id"]
        assert control.json()["scopes"] == ALL_SCOPES

        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        forged = {
            "wrong-key": mint(admin_token, key="an-attacker-s-secret-of-sufficient-length!!"),
            "expired": mint(
                admin_token,
                iat=int(an_hour_ago.timestamp()),
                exp=int((an_hour_ago + timedelta(minutes=15)).timestamp()),
            ),
            "alg-none": unsigned_token(claims_for(admin_token)),
            "other-hs-algorithm": mint(admin_token, algorithm="HS512"),
            "refresh-type": mint(admin_token, type="refresh"),
            "wrong-audience": mint(admin_token, aud="someone-else"),
            "wrong-issuer": mint(admin_token, iss="not-tandem"),
            "unknown-login": mint(admin_token, sid=str(uuid.uuid4())),
            "other-organization": mint(admin_token, org=str(uuid.uuid4())),
            "not-a-jwt": "definitely.not.a-token",
        }
        responses = {name: await me(token) for name, token in forged.items()}
        assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(forged, 401)
        assert {name: r.headers.get("www-authenticate") for name, r in responses.items()} == (
            dict.fromkeys(forged, "Bearer")
        )
        assert "expired" in responses["expired"].json()["detail"].lower()
        for name, response in responses.items():
            assert isinstance(response.json()["detail"], str), name
            assert admin_token not in response.text, name

        # A user an admin deactivates: their real token and a freshly minted valid one die.
        member_token = member_login["access_token"]
        assert (await me(member_token)).json()["id"] == member["id"]
        deactivated = await client.delete(
            f"/api/v1/users/{member['id']}", headers=bearer(admin_token)
        )
        assert deactivated.status_code == 204, deactivated.text
        assert deactivated.content == b""
        shown = await client.get(f"/api/v1/users/{member['id']}", headers=bearer(admin_token))
        assert shown.json()["is_active"] is False
        for token in (member_token, mint(member_token)):
            refused = await me(token)
            assert refused.status_code == 401, refused.text
            assert "inactive" in refused.json()["detail"]
        relogin = await client.post(
            "/api/v1/auth/login", json={"email": "mallory@example.com", "password": PASSWORD}
        )
        assert relogin.status_code == 401, relogin.text
        assert relogin.json() == {"detail": "Incorrect email or password"}

        # No credentials at all: 401 naming both ways in, with the Bearer challenge.
        anonymous = await client.get("/api/v1/users/me")
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"] == "Bearer"
        detail = anonymous.json()["detail"]
        assert "Authorization" in detail
        assert "X-API-Key" in detail


# --- API keys and organizations -----------------------------------------------------------------


async def test_api_keys_work_until_deleted_and_organizations_do_not_see_each_other(
    start_server: StartServer, wait_until: WaitUntil
) -> None:
    server = await serving(start_server, wait_until)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as client:
        first = await register(client, "first@example.com", "First Org")
        first_auth = bearer(first["access_token"])
        project = await client.post(
            "/api/v1/projects",
            headers=first_auth,
            json={"name": "Moon Landing", "description": "One small step"},
        )
        assert project.status_code == 201, project.text
        created = project.json()
        assert set(created) == {
            "id",
            "name",
            "slug",
            "description",
            "owner_id",
            "organization_id",
            "created_at",
        }
        assert (created["name"], created["slug"], created["description"]) == (
            "Moon Landing",
            "moon-landing",
            "One small step",
        )
        assert created["owner_id"] == first["user"]["id"]
        assert created["organization_id"] == first["user"]["organization_id"]

        # An API key, created over HTTP: the key is shown once and works as X-API-Key.
        made = await client.post(
            "/api/v1/api-keys",
            headers=first_auth,
            json={"name": "ci robot", "scopes": ["projects:read"]},
        )
        assert made.status_code == 201, made.text
        api_key = made.json()
        assert set(api_key) == {"id", "name", "prefix", "scopes", "key", "created_at", "expires_at"}
        assert (api_key["name"], api_key["scopes"], api_key["expires_at"]) == (
            "ci robot",
            ["projects:read"],
            None,
        )
        assert api_key["key"].startswith(api_key["prefix"])
        assert len(api_key["key"]) > len(api_key["prefix"])
        key_auth = {"X-API-Key": api_key["key"]}

        listed = await client.get("/api/v1/projects", headers=key_auth)
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"items": [created], "count": 1}
        beyond_scope = await client.get("/api/v1/users", headers=key_auth)
        assert beyond_scope.status_code == 403, beyond_scope.text
        assert "users:admin" in beyond_scope.json()["detail"]

        keys = await client.get("/api/v1/api-keys", headers=first_auth)
        assert keys.json()["count"] == 1
        assert keys.json()["items"][0]["id"] == api_key["id"]
        assert "key" not in keys.json()["items"][0]
        assert api_key["key"] not in keys.text

        # A second organization sees none of the first one's objects: always 404.
        second = await register(client, "second@example.com", "Second Org", "Bob Builder")
        assert second["user"]["organization_id"] != first["user"]["organization_id"]
        second_auth = bearer(second["access_token"])
        project_url = f"/api/v1/projects/{created['id']}"
        user_url = f"/api/v1/users/{first['user']['id']}"
        attempts = {
            "get-project": await client.get(project_url, headers=second_auth),
            "patch-project": await client.patch(
                project_url, headers=second_auth, json={"name": "Stolen"}
            ),
            "delete-project": await client.delete(project_url, headers=second_auth),
            "get-user": await client.get(user_url, headers=second_auth),
            "patch-user": await client.patch(
                user_url, headers=second_auth, json={"role": "member"}
            ),
            "delete-user": await client.delete(user_url, headers=second_auth),
            "delete-api-key": await client.delete(
                f"/api/v1/api-keys/{api_key['id']}", headers=second_auth
            ),
        }
        assert {name: r.status_code for name, r in attempts.items()} == dict.fromkeys(attempts, 404)
        for name, response in attempts.items():
            assert "not found" in response.json()["detail"].lower(), name
        theirs = await client.get("/api/v1/projects", headers=second_auth)
        assert theirs.json() == {"items": [], "count": 0}
        their_users = await client.get("/api/v1/users", headers=second_auth)
        assert [u["id"] for u in their_users.json()["items"]] == [second["user"]["id"]]

        # Nothing of the first organization changed, and its key still works...
        unchanged = await client.get(project_url, headers=key_auth)
        assert unchanged.json() == created
        first_me = await client.get("/api/v1/users/me", headers=first_auth)
        assert (first_me.json()["role"], first_me.json()["is_active"]) == ("admin", True)

        # ...until its owner deletes it; then it is refused straight away.
        revoked = await client.delete(f"/api/v1/api-keys/{api_key['id']}", headers=first_auth)
        assert revoked.status_code == 204, revoked.text
        assert revoked.content == b""
        refused = await client.get("/api/v1/projects", headers=key_auth)
        assert refused.status_code == 401, refused.text
        assert "revoked" in refused.json()["detail"].lower()
        remaining = await client.get("/api/v1/api-keys", headers=first_auth)
        assert remaining.json() == {"items": [], "count": 0}
