"""Jobs of one organization cannot starve another's (issue 12, finding 1): claims share the
slots between organizations, each organization under a cap. Real executors, real commits,
both backends."""

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tandem.identity.models import Organization
from tandem.jobs.dispatch import InProcessDispatch
from tandem.jobs.executor import Executor
from tandem.jobs.models import Job, JobAttempt
from tandem.jobs.runner import JobRunner
from tandem.jobs.service import JobControl, submit_job
from tandem.tasks import task_registry
from tests.conftest import CommittedDatabase
from tests.integration.test_jobs_execution import (
    executors_until_all_succeeded,
    fast_settings,
    live_app,
)

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]


def peak(intervals: Iterable[tuple[datetime, datetime | None]]) -> int:
    """The most intervals open at one instant (an unfinished one is open to the end)."""
    events = sorted(
        (moment, step)
        for start, end in intervals
        for moment, step in ((start, 1), (end or datetime.max.replace(tzinfo=start.tzinfo), -1))
    )
    open_now = most = 0
    for _, step in events:  # an end sorts before a start at the same instant
        open_now += step
        most = max(most, open_now)
    return most


async def attempt_intervals(
    db: CommittedDatabase, organization_id: uuid.UUID | None = None
) -> list[tuple[datetime, datetime | None]]:
    query = select(JobAttempt.started_at, JobAttempt.finished_at).join(
        Job, Job.id == JobAttempt.job_id
    )
    if organization_id is not None:
        query = query.where(Job.organization_id == organization_id)
    async with db.sessionmaker() as session:
        return [(row.started_at, row.finished_at) for row in await session.execute(query)]


async def test_a_flooding_organization_leaves_a_slot_for_another_organizations_agent_run(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """Finding 1: eight long jobs of organization A filled every slot and B's synchronous
    agent run waited for them; now A runs at most its cap and B's run answers at once."""
    settings = fast_settings(
        committed_db, tmp_path, job_concurrency=4, job_org_concurrency=3, job_lease_seconds=10
    )
    async with live_app(settings, wait_until, email="a@example.com") as flooder:
        jobs = [await flooder.submit(payload={"duration_seconds": 20}) for _ in range(8)]

        async def three_running() -> bool:
            statuses = [(await flooder.job(job["id"]))["status"] for job in jobs]
            return statuses.count("running") == 3

        await wait_until(three_running, timeout=10)
        body = {"email": "b@example.com", "password": "a long enough password", "full_name": "B"}
        registered = await flooder.client.post("/api/v1/auth/register", json=body)
        b_headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        started = time.monotonic()
        run = await flooder.client.post(
            "/api/v1/agents/run",
            json={"agent_id": "summarizer", "input_text": "One. Two. Three."},
            headers=b_headers,
        )
        elapsed = time.monotonic() - started
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "completed"
        assert elapsed < 5, f"B's run waited {elapsed:.1f} s for A's jobs"
        statuses = [(await flooder.job(job["id"]))["status"] for job in jobs]
        assert statuses.count("running") == 3, "A never holds more than its cap"


async def _organizations(db: CommittedDatabase, *names: str) -> list[uuid.UUID]:
    async with db.sessionmaker() as session, session.begin():
        organizations = [Organization(name=name) for name in names]
        session.add_all(organizations)
    return [organization.id for organization in organizations]


async def _submit(
    db: CommittedDatabase,
    queue: JobControl,
    organization_id: uuid.UUID,
    count: int,
    seconds: float,
) -> list[uuid.UUID]:
    async with db.sessionmaker() as session, session.begin():
        jobs = [
            (
                await submit_job(
                    session,
                    queue,
                    task="echo",
                    payload={"n": n, "duration_seconds": seconds},
                    organization_id=organization_id,
                )
            )[0]
            for n in range(count)
        ]
    return [job.id for job in jobs]


async def _started(db: CommittedDatabase, job_id: uuid.UUID) -> datetime | None:
    async with db.sessionmaker() as session:
        return await session.scalar(
            select(JobAttempt.started_at).where(JobAttempt.job_id == job_id)
        )


async def test_with_a_flooded_queue_another_organization_starts_within_one_job_duration(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """The fairness property, without a cap to leave room: A's 12 jobs hold both slots and
    fill the queue; B's job takes the first slot that frees, ahead of A's older jobs."""
    duration = 1.0
    settings = fast_settings(
        committed_db, tmp_path, job_concurrency=2, job_org_concurrency=2, job_lease_seconds=10
    )
    dispatch = InProcessDispatch()
    queue = JobControl(task_registry(), dispatch)
    flooder, neighbour = await _organizations(committed_db, "A", "B")
    runner = JobRunner(committed_db.sessionmaker, task_registry(), settings, dispatch, "w")
    executor = Executor(runner, dispatch)
    executor.start()
    try:
        await _submit(committed_db, queue, flooder, 12, duration)
        await wait_until(lambda: executor.running_jobs == 2, timeout=10)
        [b_job] = await _submit(committed_db, queue, neighbour, 1, 0)

        async def b_started() -> datetime | None:
            return await _started(committed_db, b_job)

        start = await wait_until(b_started, timeout=10)
        async with committed_db.sessionmaker() as session:
            submitted = await session.scalar(select(Job.created_at).where(Job.id == b_job))
        assert submitted is not None
        waited = (start - submitted).total_seconds()
        assert waited <= duration + 0.5, f"B waited {waited:.2f} s (a job takes {duration} s)"
    finally:
        await executor.stop(grace_seconds=0)
    assert peak(await attempt_intervals(committed_db)) <= 2


async def test_the_total_cap_holds_over_several_executors(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """TANDEM_JOB_ORG_CONCURRENCY_TOTAL: two executors (as two processes would) with four
    slots each never run more than two of one organization's jobs at once between them."""
    settings = fast_settings(
        committed_db,
        tmp_path,
        job_concurrency=4,
        job_org_concurrency=4,
        job_org_concurrency_total=2,
        job_lease_seconds=10,
    )
    queue = JobControl(task_registry(), InProcessDispatch())
    [flooder] = await _organizations(committed_db, "A")
    jobs = await _submit(committed_db, queue, flooder, 8, 0.3)
    async with executors_until_all_succeeded(committed_db, settings, queue, 2, wait_until):
        pass
    intervals = await attempt_intervals(committed_db, flooder)
    assert len(intervals) == len(jobs)
    assert peak(intervals) == 2
