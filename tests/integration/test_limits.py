"""Isolation under load, the limits half (issue 12, findings 3-6 and the quotas): rate limits
that API keys, new users or other addresses do not multiply, request size limits, and row
quotas per organization. Over HTTP on the real app, on SQLite and PostgreSQL; each test has
an app of its own, so its budgets start full.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tandem.app import create_app
from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.review.states import ThreadStatus
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, LoginAs, override_session, running
from tests.factories import TEST_PASSWORD, make_thread, make_user
from tests.integration.test_jobs_execution import WaitUntil, fast_settings, live_app

pytestmark = pytest.mark.anyio

MAX_REQUEST_BYTES = 4096
LIMITS: dict[str, Any] = {
    "rate_limit_agents": "3/minute",
    "rate_limit_agents_organization": "5/minute",
    "rate_limit_content": "60/hour",
    "rate_limit_jobs": "3/minute",
    "rate_limit_api_keys": "6/hour",
    "rate_limit_login": "5/minute",
    "rate_limit_login_address": "4/minute",
    "rate_limit_login_failures": "3/hour",
    "rate_limit_register": "10/hour",
    "rate_limit_register_global": "3/hour",
    "max_request_bytes": MAX_REQUEST_BYTES,
    "job_max_payload_bytes": 1024,
    "quota_waiting_threads": 2,
    "quota_schedules": 2,
    "quota_people": 2,
    "quota_api_keys": 2,
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,
        worker_enabled=False,
        **LIMITS,
    )


def from_address(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client of the running `app` whose connections come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def assert_limited(response: httpx.Response, limit: str, remaining: int = 0) -> None:
    """The 429 of API.md: Retry-After, the X-RateLimit-* headers, a detail saying when."""
    assert response.status_code == 429, response.text
    retry = int(response.headers["Retry-After"])
    assert retry >= 1
    unit = "second" if retry == 1 else "seconds"
    assert response.json() == {"detail": f"Rate limit exceeded ({limit}). Retry in {retry} {unit}."}
    amount = limit.split(" ", 1)[0]
    assert response.headers["X-RateLimit-Limit"] == amount
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())


def assert_budget(response: httpx.Response, status: int, limit: int, remaining: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)


async def new_key(client: httpx.AsyncClient, headers: dict[str, str], *scopes: str) -> str:
    body = {"name": "k", "scopes": list(scopes)}
    created = await client.post("/api/v1/api-keys", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


# --- finding 3: agent runs per user and per organization ----------------------------------


async def test_api_keys_draw_on_their_creators_agent_budget(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    keys = [await new_key(client, headers, "agent:read") for _ in range(2)]
    answers = [await client.get("/api/v1/agents", headers={"X-API-Key": key}) for key in keys * 2]

    for answer, remaining in zip(answers[:3], [2, 1, 0], strict=True):
        assert_budget(answer, 200, limit=3, remaining=remaining)
    assert_limited(answers[3], "3 per 1 minute")
    assert_limited(await client.get("/api/v1/agents", headers=headers), "3 per 1 minute")
    outsider = await login_as(await make_user())
    assert_budget(await client.get("/api/v1/agents", headers=outsider), 200, limit=3, remaining=2)


async def test_an_organization_has_one_agent_budget_over_its_users(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    first = await login_as(member)
    second = await login_as(await make_user(organization_id=member.organization_id))
    outsider = await login_as(await make_user())

    for _ in range(3):
        assert (await client.get("/api/v1/agents", headers=first)).status_code == 200
    # The organization's 5 minus 3 leaves 2, fewer than the second user's own 3.
    assert_budget(await client.get("/api/v1/agents", headers=second), 200, limit=5, remaining=1)
    assert_budget(await client.get("/api/v1/agents", headers=second), 200, limit=5, remaining=0)
    assert_limited(await client.get("/api/v1/agents", headers=second), "5 per 1 minute")
    assert_budget(await client.get("/api/v1/agents", headers=outsider), 200, limit=3, remaining=2)


async def test_creating_api_keys_is_rate_limited_per_user(
    client: httpx.AsyncClient, login_as: LoginAs, member: User, settings: Settings
) -> None:
    settings.quota_api_keys = 100  # the app's own settings object: the rate, not the quota
    headers = await login_as(member)
    for _ in range(6):
        await new_key(client, headers, "agent:read")
    body = {"name": "k", "scopes": ["agent:read"]}
    refused = await client.post("/api/v1/api-keys", json=body, headers=headers)
    assert_limited(refused, "6 per 1 hour")
    other = await login_as(await make_user())
    accepted = await client.post("/api/v1/api-keys", json=body, headers=other)
    assert_budget(accepted, 201, limit=6, remaining=5)


# --- finding 4: content creation (counted in drafts) and job submission ----------------------

CREATE = {"topics": ["trams"], "platform": "linkedin", "tone": "casual"}


async def test_content_creation_is_limited_in_drafts_per_user(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    key = {"X-API-Key": await new_key(client, headers, "agent:run")}

    fifty = await client.post("/api/content/create", json=CREATE | {"count": 50}, headers=key)
    eleven = await client.post("/api/content/create", json=CREATE | {"count": 11}, headers=headers)
    ten = await client.post("/api/content/create", json=CREATE | {"count": 10}, headers=headers)
    outsider = await login_as(await make_user())
    other = await client.post("/api/content/create", json=CREATE | {"count": 1}, headers=outsider)

    assert_budget(fifty, 202, limit=60, remaining=10)
    assert fifty.json()["status"] == "generating"
    assert_limited(eleven, "60 per 1 hour", remaining=10)  # 10 left: 11 do not fit
    assert_budget(ten, 202, limit=60, remaining=0)
    assert_budget(other, 202, limit=60, remaining=59)


async def test_job_submission_is_rate_limited_per_user(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    key = {"X-API-Key": await new_key(client, headers, "jobs:write")}
    echo = {"task": "echo", "payload": {}}
    answers = [
        await client.post("/api/v1/jobs", json=echo, headers=auth)
        for auth in (headers, key, headers, key)
    ]
    for answer, remaining in zip(answers[:3], [2, 1, 0], strict=True):
        assert_budget(answer, 202, limit=3, remaining=remaining)
    assert_limited(answers[3], "3 per 1 minute")


# --- finding 5: request and payload sizes ------------------------------------------------

TOO_LARGE = {"detail": f"Request body too large: at most {MAX_REQUEST_BYTES} bytes are accepted"}


class KilobyteChunks:
    """A request body of `count` 1 KiB chunks, streamed; `sent` says how many were read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.sent += 1
            yield b"x" * 1024


async def test_a_body_declared_over_the_limit_is_413_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    body = KilobyteChunks(100)
    response = await client.post(
        "/api/v1/agents/run",
        content=body,
        headers={"Content-Length": str(100 * 1024), "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json() == TOO_LARGE
    assert response.headers["X-Request-ID"]
    assert body.sent == 0


async def test_a_streamed_body_is_413_once_it_passes_the_limit(
    client: httpx.AsyncClient,
) -> None:
    body = KilobyteChunks(20_000)  # 20 MB, if it were all read
    response = await client.post(
        "/api/v1/jobs", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json() == TOO_LARGE
    assert response.headers["Content-Type"] == "application/json"
    assert body.sent <= MAX_REQUEST_BYTES // 1024 + 1


async def test_a_streamed_body_under_the_limit_goes_through(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"task": "echo", '
        yield b'"payload": {"n": 1}}'

    headers = await login_as(member) | {"Content-Type": "application/json"}
    response = await client.post("/api/v1/jobs", content=body(), headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["payload"] == {"n": 1}


async def test_a_job_payload_over_its_limit_is_422(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    payload = {"blob": "x" * 1500}  # {"blob":"..."}: 1511 bytes
    response = await client.post(
        "/api/v1/jobs", json={"task": "echo", "payload": payload}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "payload"],
                "msg": "payload is 1511 bytes as JSON; at most 1024 are accepted",
                "type": "value_error",
            }
        ]
    }


# --- finding 6: login per account and per address, registration globally, proxies --------


async def login_from(app: FastAPI, address: str, email: str, password: str) -> httpx.Response:
    async with from_address(app, address) as client:
        body = {"email": email, "password": password}
        return await client.post("/api/v1/auth/login", json=body)


async def test_a_refused_request_still_reports_the_budget_it_drew_on(
    app: FastAPI, client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    """API.md: limited responses carry X-RateLimit-*, errors included: a failed login counts
    against the address's budget, and the client is told what is left of it."""
    wrong = await login_from(app, "198.51.100.7", member.email, "not the password")
    assert wrong.json() == {"detail": "Incorrect email or password"}
    assert_budget(wrong, 401, limit=4, remaining=3)  # per address: 4/minute, less than 5

    headers = await login_as(member)
    unknown = await client.get("/api/v1/agents/no-such-agent", headers=headers)
    assert unknown.json() == {"detail": "Agent 'no-such-agent' not found"}
    assert_budget(unknown, 404, limit=3, remaining=2)


async def test_failed_logins_are_limited_per_account_whatever_the_address(
    app: FastAPI, client: httpx.AsyncClient, member: User
) -> None:
    for n in range(3):
        wrong = await login_from(app, f"198.51.100.{n}", member.email, "not the password")
        assert wrong.status_code == 401, wrong.text
        assert wrong.json() == {"detail": "Incorrect email or password"}
    locked = await login_from(app, "203.0.113.50", member.email.upper(), TEST_PASSWORD)
    other = await make_user()
    unaffected = await login_from(app, "198.51.100.0", other.email, TEST_PASSWORD)

    assert_limited(locked, "3 per 1 hour")
    assert unaffected.status_code == 200, unaffected.text
    assert unaffected.json()["token_type"] == "bearer"


async def test_successful_logins_do_not_count_as_failures(
    app: FastAPI, client: httpx.AsyncClient, member: User
) -> None:
    for n in range(5):
        ok = await login_from(app, f"198.51.100.{n}", member.email, TEST_PASSWORD)
        assert ok.status_code == 200, ok.text


async def test_logins_are_limited_per_address_whatever_the_email(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    for n in range(4):
        response = await login_from(app, "198.51.100.9", f"user{n}@example.com", "password!!")
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "Incorrect email or password"}
    limited = await login_from(app, "198.51.100.9", "user9@example.com", "password!!")
    elsewhere = await login_from(app, "198.51.100.10", "user9@example.com", "password!!")

    assert_limited(limited, "4 per 1 minute")
    assert elsewhere.status_code == 401, elsewhere.text
    assert elsewhere.json() == {"detail": "Incorrect email or password"}


async def test_registration_is_limited_over_all_addresses(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def register(n: int) -> httpx.Response:
        async with from_address(app, f"198.51.100.{n}") as one:
            body = {"email": f"r{n}@example.com", "password": "long enough pass", "full_name": "R"}
            return await one.post("/api/v1/auth/register", json=body)

    for n in range(3):
        assert (await register(n)).status_code == 201
    assert_limited(await register(3), "3 per 1 hour")


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Rotating X-Forwarded-For from 127.0.0.1 (uvicorn's default trust) dodges nothing."""
    for n in range(4):
        response = await client.post(
            "/api/v1/auth/login",
            json={"email": f"user{n}@example.com", "password": "password!!"},
            headers={"X-Forwarded-For": f"192.0.2.{n}"},
        )
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "Incorrect email or password"}
    limited = await client.post(
        "/api/v1/auth/login",
        json={"email": "user9@example.com", "password": "password!!"},
        headers={"X-Forwarded-For": "192.0.2.200"},
    )
    assert_limited(limited, "4 per 1 minute")


@asynccontextmanager
async def behind_proxy(
    settings: Settings, db_connection: AsyncConnection, proxies: str
) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"forwarded_allow_ips": proxies}))
    override_session(app, db_connection)
    async with running(app):
        yield app


async def test_behind_a_trusted_proxy_the_address_it_appended_is_the_key(
    settings: Settings, db_connection: AsyncConnection, db_session: AsyncSession
) -> None:
    """What the client wrote into X-Forwarded-For comes before what the proxy appended."""
    async with behind_proxy(settings, db_connection, "10.0.0.1") as app:

        async def attempt(peer: str, forwarded: str, email: str) -> httpx.Response:
            async with from_address(app, peer) as client:
                return await client.post(
                    "/api/v1/auth/login",
                    json={"email": email, "password": "password!!"},
                    headers={"X-Forwarded-For": forwarded},
                )

        for n in range(4):
            spoofed = f"192.0.2.{n}, 203.0.113.7"
            assert (await attempt("10.0.0.1", spoofed, f"u{n}@example.com")).status_code == 401
        limited = await attempt("10.0.0.1", "192.0.2.99, 203.0.113.7", "u9@example.com")
        another_client = await attempt("10.0.0.1", "203.0.113.8", "u9@example.com")
        untrusted_peer = await attempt("10.0.0.2", "203.0.113.7", "u9@example.com")

    assert_limited(limited, "4 per 1 minute")
    assert another_client.status_code == 401, another_client.text
    assert another_client.json() == {"detail": "Incorrect email or password"}
    assert untrusted_peer.status_code == 401  # keyed on 10.0.0.2, whatever it claims
    assert untrusted_peer.json() == {"detail": "Incorrect email or password"}


# --- quotas per organization ---------------------------------------------------------------


def quota_detail(count: int, what: str, remedy: str) -> dict[str, str]:
    return {
        "detail": f"Quota reached: this organization has {count} {what}, the most allowed "
        f"is {count}; {remedy}"
    }


async def test_people_and_schedules_are_limited_per_organization(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    headers = await login_as(await make_user(Role.coordinator))
    outsider = await login_as(await make_user(Role.coordinator))

    def person(n: int) -> dict[str, Any]:
        return {"name": f"P {n}", "email": f"p{n}@example.com", "type": "faculty"}

    schedule = {"name": "Spring", "start_date": "2027-03-01", "end_date": "2027-03-28"}
    for n in range(2):
        assert (await client.post("/api/v1/people", json=person(n), headers=headers)).is_success
        assert (await client.post("/api/v1/schedules", json=schedule, headers=headers)).is_success
    third_person = await client.post("/api/v1/people", json=person(3), headers=headers)
    third_schedule = await client.post("/api/v1/schedules", json=schedule, headers=headers)
    elsewhere = await client.post("/api/v1/people", json=person(3), headers=outsider)

    assert third_person.status_code == 409, third_person.text
    assert third_person.json() == quota_detail(2, "people", "delete one first")
    assert third_schedule.status_code == 409, third_schedule.text
    assert third_schedule.json() == quota_detail(2, "schedules", "delete one first")
    assert elsewhere.status_code == 201, elsewhere.text
    assert elsewhere.json()["email"] == "p3@example.com"


async def test_api_keys_not_revoked_are_limited_per_organization(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    colleague = await login_as(await make_user(organization_id=member.organization_id))
    body = {"name": "k", "scopes": ["agent:read"]}
    first = (await client.post("/api/v1/api-keys", json=body, headers=headers)).json()
    await new_key(client, colleague, "agent:read")
    refused = await client.post("/api/v1/api-keys", json=body, headers=headers)
    revoked = await client.delete(f"/api/v1/api-keys/{first['id']}", headers=headers)
    after_revoking = await client.post("/api/v1/api-keys", json=body, headers=colleague)

    assert refused.status_code == 409, refused.text
    assert refused.json() == quota_detail(2, "API keys", "revoke one first")
    assert revoked.status_code == 204, revoked.text
    assert after_revoking.status_code == 201, after_revoking.text
    assert (after_revoking.json()["name"], after_revoking.json()["scopes"]) == ("k", ["agent:read"])


async def test_threads_waiting_for_a_decision_are_limited_per_organization(
    client: httpx.AsyncClient, login_as: LoginAs, member: User
) -> None:
    headers = await login_as(member)
    await make_thread(member.organization_id)  # pending_review: counts
    await make_thread(member.organization_id, status=ThreadStatus.published)  # does not
    accepted = await client.post("/api/content/create", json=CREATE, headers=headers)
    refused = await client.post("/api/content/create", json=CREATE, headers=headers)
    outsider = await login_as(await make_user())
    elsewhere = await client.post("/api/content/create", json=CREATE, headers=outsider)

    assert accepted.status_code == 202, accepted.text
    assert (accepted.json()["status"], accepted.json()["request_type"]) == ("generating", "text")
    assert refused.status_code == 409, refused.text
    assert refused.json() == quota_detail(
        2, "review threads waiting for a decision", "decide some first"
    )
    assert elsewhere.status_code == 202, elsewhere.text
    assert (elsewhere.json()["status"], elsewhere.json()["request_type"]) == ("generating", "text")


async def test_a_result_over_its_limit_fails_the_attempt_saying_so(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """The echo task's result is its payload: 511 bytes is a payload accepted, a result not."""
    settings = fast_settings(committed_db, tmp_path, job_max_result_bytes=300)
    async with live_app(settings, wait_until) as live:
        job = await live.submit(payload={"blob": "x" * 500}, max_attempts=1)
        dead = await live.until(job["id"], "dead")

    error = "ResultTooLarge: result is 511 bytes as JSON; at most 300 are kept"
    assert dead["last_error"] == error
    assert [(a["outcome"], a["error"]) for a in dead["attempt_history"]] == [("failed", error)]
    assert dead["result"] is None


async def test_a_quota_holds_when_requests_race_for_its_last_unit(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    """Eight API keys asked for at once, with room for one more: one is created."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=committed_db.url,
        data_dir=tmp_path,
        worker_enabled=False,
        quota_api_keys=2,
    )
    async with running(create_app(settings)) as client:
        body = {"email": "racer@example.com", "password": "long enough pass", "full_name": "R"}
        token = (await client.post("/api/v1/auth/register", json=body)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        await new_key(client, headers, "agent:read")

        async def create() -> httpx.Response:
            key = {"name": "k", "scopes": ["agent:read"]}
            return await client.post("/api/v1/api-keys", json=key, headers=headers)

        answers = await asyncio.gather(*(create() for _ in range(8)))
        listed = (await client.get("/api/v1/api-keys", headers=headers)).json()

    assert sorted(answer.status_code for answer in answers) == [201] + [409] * 7
    assert listed["count"] == 2
