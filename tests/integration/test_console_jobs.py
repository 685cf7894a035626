"""The console's jobs pages: counts, filters, a job's attempts, retry and cancel (one job or
several), for an admin and a member, inside the test's rolled-back transaction."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import utcnow
from tandem.identity.models import User
from tandem.identity.scopes import Role
from tandem.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.console_support import assert_console_page, browser, sign_in, signed_in
from tests.factories import JobFactory, make_user

pytestmark = pytest.mark.anyio


@pytest.fixture
async def admin(db_session: AsyncSession) -> User:
    return await make_user(Role.admin)


@pytest.fixture
async def as_admin(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with signed_in(app, admin) as signed:
        yield signed


async def dead_job(organization_id: uuid.UUID, task: str = "echo", **fields: Any) -> Job:
    return await JobFactory.create_async(
        organization_id=organization_id,
        task=task,
        status=JobStatus.dead,
        attempts=3,
        runs=3,
        last_error=f"{task} failed: boom",
        finished_at=utcnow(),
        **fields,
    )


async def test_jobs_page_counts_filters_and_shows_the_last_error(
    as_admin: tuple[httpx.AsyncClient, str], admin: User
) -> None:
    page, _ = as_admin
    org = admin.organization_id
    now = utcnow()
    old = await dead_job(org, created_at=now - timedelta(minutes=5))
    new = await dead_job(org, created_at=now - timedelta(minutes=1))
    done = await JobFactory.create_async(
        organization_id=org, status=JobStatus.succeeded, result={"ok": True}
    )
    await dead_job((await make_user()).organization_id, payload={"theirs": True})

    response = await page.get("/ui/jobs")
    assert response.status_code == 200, response.text
    assert_console_page(response)
    assert "dead <strong>2</strong>" in response.text
    assert "succeeded <strong>1</strong>" in response.text
    assert "3 jobs, newest first." in response.text
    assert response.text.index(f"/ui/jobs/{new.id}") < response.text.index(f"/ui/jobs/{old.id}")
    assert "echo failed: boom" in response.text

    dead_only = await page.get("/ui/jobs", params={"status": "dead", "task": "echo"})
    assert "2 jobs, newest first." in dead_only.text
    assert f"/ui/jobs/{done.id}" not in dead_only.text
    assert f'name="job_id" value="{new.id}"' in dead_only.text
    assert ">Retry selected<" in dead_only.text


async def test_job_page_shows_payload_attempts_and_retries_a_dead_job(
    as_admin: tuple[httpx.AsyncClient, str], admin: User, db_session: AsyncSession
) -> None:
    page, token = as_admin
    job = await JobFactory.create_async(
        organization_id=admin.organization_id,
        status=JobStatus.dead,
        attempts=1,
        runs=1,
        max_attempts=1,
        payload={"will_fail": True},
        last_error="RuntimeError: told to fail",
    )
    db_session.add(
        JobAttempt(
            job_id=job.id,
            number=1,
            worker="embedded-1",
            outcome=AttemptOutcome.failed,
            started_at=utcnow(),
            finished_at=utcnow(),
            error="RuntimeError: told to fail",
        )
    )
    await db_session.flush()
    shown = await page.get(f"/ui/jobs/{job.id}")
    assert shown.status_code == 200, shown.text
    assert_console_page(shown)
    assert "&#34;will_fail&#34;: true" in shown.text
    assert "embedded-1" in shown.text
    assert "RuntimeError: told to fail" in shown.text
    assert ">Retry</button>" in shown.text
    assert ">Cancel</button>" not in shown.text

    retried = await page.post(f"/ui/jobs/{job.id}/retry", data={"csrf_token": token})
    assert retried.status_code == 303, retried.text
    assert retried.headers["location"] == f"/ui/jobs/{job.id}?notice=retried"
    await db_session.refresh(job)
    assert (job.status, job.attempts) == (JobStatus.pending, 0)
    after = await page.get(retried.headers["location"])
    assert "sent back to the queue" in after.text
    assert ">Cancel</button>" in after.text
    assert ">Retry</button>" not in after.text

    again = await page.post(f"/ui/jobs/{job.id}/retry", data={"csrf_token": token})
    assert again.headers["location"] == f"/ui/jobs/{job.id}?notice=job-changed"

    cancelled = await page.post(f"/ui/jobs/{job.id}/cancel", data={"csrf_token": token})
    assert cancelled.headers["location"] == f"/ui/jobs/{job.id}?notice=cancelled"
    await db_session.refresh(job)
    assert job.status is JobStatus.cancelled


async def test_a_member_cannot_retry_a_job_whose_task_needs_more_scopes(
    app: FastAPI, client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    member = await make_user(Role.member)
    echo = await dead_job(member.organization_id)
    generation = await dead_job(member.organization_id, task="schedule.generate")
    async with browser(app) as page:
        token = await sign_in(page, member.email)
        echo_page = await page.get(f"/ui/jobs/{echo.id}")
        assert ">Retry</button>" in echo_page.text
        generation_page = await page.get(f"/ui/jobs/{generation.id}")
        assert generation_page.status_code == 200, generation_page.text
        assert ">Retry</button>" not in generation_page.text
        refused = await page.post(
            f"/ui/jobs/{generation.id}/retry",
            data={"csrf_token": token},
        )
        assert refused.status_code == 403, refused.text
        assert "schedule:write" in refused.text
    await db_session.refresh(generation)
    assert generation.status is JobStatus.dead


async def test_retry_selected_retries_the_dead_jobs_and_skips_the_rest(
    as_admin: tuple[httpx.AsyncClient, str], admin: User, db_session: AsyncSession
) -> None:
    page, token = as_admin
    first = await dead_job(admin.organization_id)
    second = await dead_job(admin.organization_id)
    running = await JobFactory.create_async(
        organization_id=admin.organization_id, status=JobStatus.succeeded
    )
    response = await page.post(
        "/ui/jobs/retry",
        data={
            "csrf_token": token,
            "job_id": [str(first.id), str(second.id), str(running.id), "nonsense"],
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/jobs?status=dead&retried=2&skipped=2"
    for job in (first, second):
        await db_session.refresh(job)
        assert job.status is JobStatus.pending
    await db_session.refresh(running)
    assert running.status is JobStatus.succeeded
    shown = await page.get(response.headers["location"])
    assert "2 jobs sent back to the queue; 2 skipped" in shown.text


async def test_job_forms_need_the_csrf_token_and_another_orgs_job_is_a_404(
    as_admin: tuple[httpx.AsyncClient, str], admin: User, db_session: AsyncSession
) -> None:
    page, token = as_admin
    mine = await dead_job(admin.organization_id)
    refused = await page.post(f"/ui/jobs/{mine.id}/retry")
    assert refused.status_code == 403, refused.text
    assert "did not carry a valid security token" in refused.text
    await db_session.refresh(mine)
    assert mine.status is JobStatus.dead
    theirs = await dead_job((await make_user(Role.admin)).organization_id)
    assert (await page.get(f"/ui/jobs/{theirs.id}")).status_code == 404
    retried = await page.post(
        f"/ui/jobs/{theirs.id}/retry",
        data={"csrf_token": token},
    )
    assert retried.status_code == 404, retried.text
    assert f"Job {theirs.id} not found" in retried.text
    await db_session.refresh(theirs)
    assert theirs.status is JobStatus.dead


async def test_the_jobs_list_is_paginated(
    as_admin: tuple[httpx.AsyncClient, str], admin: User
) -> None:
    page, _ = as_admin
    now = utcnow()
    for n in range(55):
        await JobFactory.create_async(
            organization_id=admin.organization_id, created_at=now - timedelta(seconds=n)
        )
    first = await page.get("/ui/jobs")
    assert "55 jobs, newest first." in first.text
    assert "1\u201350 of 55" in first.text
    assert 'href="/ui/jobs?offset=50" rel="next">Next page<' in first.text
    assert "Previous page" not in first.text
    second = await page.get("/ui/jobs", params={"offset": "50"})
    assert "51\u201355 of 55" in second.text
    assert second.text.count('href="/ui/jobs/') == 5
    assert 'href="/ui/jobs?offset=0" rel="prev">Previous page<' in second.text
