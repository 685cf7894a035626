"""Reviewers told that work waits, through the real outbox and a real SMTP server: one
digest per person and interval, with links to the console, none twice after a restart."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.app import create_app
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.smtp_server import ReceivedEmail, SmtpServer

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]
PASSWORD = "a long enough password"
REQUEST = {"topics": ["trams"], "platform": "linkedin", "count": 1, "tone": "casual"}


@dataclass
class Live:
    client: httpx.AsyncClient
    headers: dict[str, str]
    wait_until: WaitUntil

    async def waiting_thread(self) -> str:
        created = await self.client.post("/api/content/create", json=REQUEST, headers=self.headers)
        assert created.status_code == 202, created.text
        thread_id = str(created.json()["thread_id"])

        async def waits() -> bool:
            thread = await self.client.get(f"/api/hitl/{thread_id}", headers=self.headers)
            return bool(thread.json()["status"] == "pending_review")

        await self.wait_until(waits, timeout=20)
        return thread_id

    async def digest_jobs(self) -> list[dict[str, Any]]:
        jobs = await self.client.get("/api/v1/jobs?task=review.digest", headers=self.headers)
        return list(jobs.json()["items"])


def settings_for(db: CommittedDatabase, tmp_path: Path, smtp: SmtpServer) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "data_dir": tmp_path,
        "job_retry_base_seconds": 0.01,
        "job_poll_seconds": 0.05,
        "outbox_poll_seconds": 0.05,
        "rate_limit_register": "1000/minute",
        "rate_limit_login": "1000/minute",
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "public_url": "https://tandem.example.org",
        "review_digest_seconds": 1e9,  # one window for the whole test
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def digests_in(smtp: SmtpServer) -> list[ReceivedEmail]:
    """The digests received (new users also get a welcome e-mail)."""
    return [m for m in smtp.received if "review thread" in m.subject]


@asynccontextmanager
async def live_app(settings: Settings, wait_until: WaitUntil) -> AsyncIterator[Live]:
    async with running(create_app(settings)) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": "owner@example.com", "password": PASSWORD}
        )
        if login.status_code != 200:
            body = {"email": "owner@example.com", "password": PASSWORD, "full_name": "Owner"}
            login = await client.post("/api/v1/auth/register", json=body)
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        yield Live(client, headers, wait_until)


async def test_reviewers_get_one_digest_per_interval_with_links_none_again_after_a_restart(
    committed_db: CommittedDatabase,
    tmp_path: Path,
    smtp_server: SmtpServer,
    wait_until: WaitUntil,
) -> None:
    settings = settings_for(committed_db, tmp_path, smtp_server)
    async with live_app(settings, wait_until) as live:
        for email, role in [("rev@example.com", "reviewer"), ("mem@example.com", "member")]:
            body = {"email": email, "password": PASSWORD, "full_name": role, "role": role}
            added = await live.client.post("/api/v1/users", json=body, headers=live.headers)
            assert added.status_code == 201, added.text
        first = await live.waiting_thread()
        await wait_until(lambda: len(digests_in(smtp_server)) >= 2, timeout=20)
        digests = sorted(digests_in(smtp_server), key=lambda m: m.recipients)
        assert [m.recipients for m in digests] == [["owner@example.com"], ["rev@example.com"]]
        assert {m.subject for m in digests} == {"1 review thread(s) wait for you"}
        assert f"https://tandem.example.org/ui/threads/{first}" in digests[0].body

    async with live_app(settings, wait_until) as live:  # a restart, same database
        second = await live.waiting_thread()

        async def both_digest_jobs_done() -> list[dict[str, Any]] | None:
            jobs = await live.digest_jobs()
            done = [job for job in jobs if job["status"] == "succeeded"]
            return jobs if len(done) == 2 else None

        jobs = await wait_until(both_digest_jobs_done, timeout=20)
        # Everyone was told within this interval: nothing more now, the next window's digest
        # (one job for the organization) will list both threads.
        assert len(digests_in(smtp_server)) == 2
        waiting = [job for job in jobs if job["status"] == "pending"]
        assert len(waiting) == 1
        assert second != first


async def test_a_chosen_recipient_list_gets_the_digest_instead_of_everyone(
    committed_db: CommittedDatabase,
    tmp_path: Path,
    smtp_server: SmtpServer,
    wait_until: WaitUntil,
) -> None:
    settings = settings_for(committed_db, tmp_path, smtp_server)
    async with live_app(settings, wait_until) as live:
        added = {}
        for email, role in [("rev@example.com", "reviewer"), ("lead@example.com", "coordinator")]:
            body = {"email": email, "password": PASSWORD, "full_name": role, "role": role}
            response = await live.client.post("/api/v1/users", json=body, headers=live.headers)
            added[email] = response.json()["id"]
        chosen = await live.client.put(
            "/api/v1/organizations/current/review-recipients",
            json={"user_ids": [added["lead@example.com"]]},
            headers=live.headers,
        )
        assert chosen.status_code == 200, chosen.text
        thread = await live.waiting_thread()

        async def digest_job_done() -> dict[str, Any] | None:
            done = [job for job in await live.digest_jobs() if job["status"] == "succeeded"]
            return done[0] if done else None

        job = await wait_until(digest_job_done, timeout=20)
        assert job["result"]["sent"] == 1, "one e-mail: to the chosen recipient only"
        await wait_until(lambda: digests_in(smtp_server), timeout=20)
        digests = digests_in(smtp_server)
        assert [m.recipients for m in digests] == [["lead@example.com"]]
        assert f"https://tandem.example.org/ui/threads/{thread}" in digests[0].body
