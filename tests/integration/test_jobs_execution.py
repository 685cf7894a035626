"""Jobs actually running: the embedded executor on a database with real commits, both backends."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tandem.app import create_app
from tandem.db import create_engine, create_sessionmaker, utcnow
from tandem.jobs import lifecycle
from tandem.jobs.claims import Claim
from tandem.jobs.dispatch import InProcessDispatch
from tandem.jobs.executor import Executor
from tandem.jobs.models import Job, JobAttempt, JobStatus
from tandem.jobs.runner import JobRunner, SuccessWriter
from tandem.jobs.service import JobControl, submit_job
from tandem.notifications.models import OutboxMessage, OutboxStatus
from tandem.settings import Settings
from tandem.tasks import task_registry
from tests.conftest import CommittedDatabase, running
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]
PASSWORD = "a long enough password"


def fast_settings(db: CommittedDatabase, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "data_dir": tmp_path,
        "job_retry_base_seconds": 0.01,
        "job_lease_seconds": 1.5,
        "job_poll_seconds": 0.05,
        "outbox_poll_seconds": 0.05,
        "rate_limit_register": "1000/minute",
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@dataclass
class LiveApp:
    app: FastAPI
    client: httpx.AsyncClient
    headers: dict[str, str]
    wait_until: WaitUntil

    async def submit(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/jobs", json={"task": "echo"} | body, headers=self.headers
        )
        assert response.status_code == 202, response.text
        return dict(response.json())

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/jobs/{job_id}", headers=self.headers)
        return dict(response.json())

    async def until(self, job_id: str, *statuses: str, timeout: float = 15) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["status"] in statuses else None

        result: dict[str, Any] = await self.wait_until(reached, timeout=timeout)
        return result


@asynccontextmanager
async def live_app(
    settings: Settings, wait_until: WaitUntil, email: str = "owner@example.com"
) -> AsyncIterator[LiveApp]:
    app = create_app(settings)
    async with running(app) as client:
        body = {"email": email, "password": PASSWORD, "full_name": "Owner"}
        registered = await client.post("/api/v1/auth/register", json=body)
        assert registered.status_code == 201, registered.text
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        yield LiveApp(app, client, headers, wait_until)


@pytest.fixture
async def live(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> AsyncIterator[LiveApp]:
    async with live_app(fast_settings(committed_db, tmp_path), wait_until) as app:
        yield app


def outcomes(job: dict[str, Any]) -> list[str]:
    return [attempt["outcome"] for attempt in job["attempt_history"]]


async def test_a_job_that_always_fails_is_dead_after_exactly_max_attempts(live: LiveApp) -> None:
    job = await live.submit(payload={"will_fail": True}, max_attempts=3)
    dead = await live.until(job["id"], "dead")
    assert dead["attempts"] == 3
    assert outcomes(dead) == ["failed", "failed", "failed"]
    assert [a["attempt"] for a in dead["attempt_history"]] == [1, 2, 3]
    assert all("echo told to fail" in a["error"] for a in dead["attempt_history"])
    assert dead["last_error"] == "EchoFailure: echo told to fail (attempt 3)"
    dead_letter = await live.client.get("/api/v1/jobs?status=dead", headers=live.headers)
    assert [j["id"] for j in dead_letter.json()["items"]] == [job["id"]]


async def test_fail_times_two_succeeds_on_the_third_attempt(live: LiveApp) -> None:
    job = await live.submit(payload={"fail_times": 2, "keep": "me"})
    done = await live.until(job["id"], "succeeded", "dead")
    assert done["status"] == "succeeded"
    assert done["attempts"] == 3
    assert outcomes(done) == ["failed", "failed", "succeeded"]
    assert done["result"] == {"fail_times": 2, "keep": "me"}
    assert done["last_error"] is None


async def test_a_dead_job_retried_runs_again_and_keeps_its_history(live: LiveApp) -> None:
    job = await live.submit(payload={"will_fail": True}, max_attempts=1)
    await live.until(job["id"], "dead")
    retried = await live.client.post(f"/api/v1/jobs/{job['id']}/retry", headers=live.headers)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    assert [a["attempt"] for a in retried.json()["attempt_history"]] == [1]
    dead_again = await live.until(job["id"], "dead")
    assert dead_again["attempts"] == 1
    assert [a["attempt"] for a in dead_again["attempt_history"]] == [1, 2]


async def test_cancelling_a_running_job_stops_it(live: LiveApp) -> None:
    job = await live.submit(payload={"duration_seconds": 30})
    await live.until(job["id"], "running")
    requested = await live.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=live.headers)
    assert requested.json()["cancel_requested"] is True
    cancelled = await live.until(job["id"], "cancelled", timeout=10)
    assert outcomes(cancelled) == ["cancelled"]


async def test_a_job_running_in_the_same_process_stops_without_waiting_for_a_heartbeat(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    # A 60 s lease: the heartbeat, which would notice the request otherwise, comes at 20 s.
    settings = fast_settings(committed_db, tmp_path, job_lease_seconds=60)
    async with live_app(settings, wait_until) as live:
        job = await live.submit(payload={"duration_seconds": 50})
        await live.until(job["id"], "running")
        await live.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=live.headers)
        cancelled = await live.until(job["id"], "cancelled", timeout=10)
    assert outcomes(cancelled) == ["cancelled"]


async def _a_long_job_and_an_idle_executor(
    committed_db: CommittedDatabase, tmp_path: Path
) -> tuple[Job, Executor]:
    """A 30 s job waiting for a claim, and an executor that claims only when told to."""
    settings = fast_settings(committed_db, tmp_path, worker_enabled=False, job_lease_seconds=60)
    queue = JobControl(task_registry(), InProcessDispatch())
    async with committed_db.sessionmaker() as session, session.begin():
        job, _ = await submit_job(
            session, queue, task="echo", payload={"duration_seconds": 30}, organization_id=None
        )
    executor = Executor(
        JobRunner(committed_db.sessionmaker, task_registry(), settings, queue.dispatch, "w"),
        claim_loop=False,
    )
    return job, executor


async def _recorded_cancelled_and_slot_freed(
    committed_db: CommittedDatabase, job: Job, executor: Executor, wait_until: WaitUntil
) -> None:
    async def cancelled() -> Job | None:
        async with committed_db.sessionmaker() as session:
            row = await session.get(Job, job.id)
            return row if row is not None and row.status is JobStatus.cancelled else None

    await wait_until(cancelled, timeout=5)
    assert executor.free_slots == executor.concurrency


async def test_a_job_cancelled_before_its_task_first_ran_is_still_recorded_cancelled(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """The cancel arrives in the same turn of the event loop as the claim that launched the
    job (nothing in between waits once the database answers at once): the job's task is
    cancelled before its first step, and must still record the outcome and free its slot."""
    job, executor = await _a_long_job_and_an_idle_executor(committed_db, tmp_path)
    try:
        assert [claim.job_id for claim in await executor.claim() or []] == [job.id]
        executor.stop_job(job.id)  # no await in between: the task has not run yet
        await _recorded_cancelled_and_slot_freed(committed_db, job, executor, wait_until)
    finally:
        await executor.stop(grace_seconds=0)


async def test_a_cancel_landing_while_the_claim_of_its_job_finishes_stops_it_at_launch(
    committed_db: CommittedDatabase,
    tmp_path: Path,
    wait_until: WaitUntil,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim has committed (a read sees the job `running`) but has not launched its task
    yet (its session is still closing): a cancel committed in that gap finds nothing running
    here. The job must still stop as soon as it is launched, not at the next heartbeat."""
    job, executor = await _a_long_job_and_an_idle_executor(committed_db, tmp_path)
    claim_due = lifecycle.claim_due

    async def claim_then_cancel(*args: Any, **kwargs: Any) -> list[Claim]:
        claims = await claim_due(*args, **kwargs)
        executor.stop_job(job.id)  # the cancel request's commit hook, in the gap
        return claims

    monkeypatch.setattr(lifecycle, "claim_due", claim_then_cancel)
    try:
        assert [claim.job_id for claim in await executor.claim() or []] == [job.id]
        await _recorded_cancelled_and_slot_freed(committed_db, job, executor, wait_until)
    finally:
        await executor.stop(grace_seconds=0)


async def test_an_expired_lease_is_a_failed_attempt_and_the_job_runs_again(
    live: LiveApp, committed_db: CommittedDatabase
) -> None:
    """A worker that died mid-job: its lease runs out, the reaper gives the job another try."""
    job_id = uuid.uuid4()
    async with committed_db.sessionmaker() as session, session.begin():
        session.add(
            Job(
                id=job_id,
                organization_id=None,
                task="echo",
                payload={},
                status=JobStatus.running,
                attempts=1,
                runs=1,
                max_attempts=3,
                next_run_at=utcnow(),
                lease_owner="ghost",
                lease_token=uuid.uuid4(),
                lease_expires_at=utcnow() - timedelta(seconds=1),
            )
        )
        session.add(JobAttempt(job_id=job_id, number=1, worker="ghost", started_at=utcnow()))

    async def finished() -> Job | None:
        async with committed_db.sessionmaker() as session:
            row = await session.get(Job, job_id)
            return row if row is not None and row.status is JobStatus.succeeded else None

    done = await live.wait_until(finished, timeout=15)
    assert done.attempts == 2
    async with committed_db.sessionmaker() as session:
        history = (
            await session.scalars(
                select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.number)
            )
        ).all()
    assert [(a.number, a.outcome.value) for a in history] == [
        (1, "lease_expired"),
        (2, "succeeded"),
    ]


async def test_shutdown_hands_a_running_job_back_without_using_an_attempt(
    live: LiveApp,
) -> None:
    job = await live.submit(payload={"duration_seconds": 30})
    await live.until(job["id"], "running")
    executor: Executor = live.app.state.executor
    await executor.stop(grace_seconds=0)
    handed_back = await live.job(job["id"])
    assert handed_back["status"] == "pending"
    assert handed_back["attempts"] == 0
    assert outcomes(handed_back) == ["handed_back"]


@asynccontextmanager
async def executors_until_all_succeeded(
    db: CommittedDatabase, settings: Settings, queue: JobControl, count: int, wait_until: WaitUntil
) -> AsyncIterator[None]:
    """`count` executors, each on its own engine (as separate processes would be), running
    until every job has succeeded (then the body runs), stopped at the end."""
    engines = [create_engine(db.url) for _ in range(count)]
    executors = [
        Executor(
            JobRunner(
                create_sessionmaker(engine), task_registry(), settings, queue.dispatch, f"w{i}"
            ),
            InProcessDispatch(),
        )
        for i, engine in enumerate(engines)
    ]
    try:
        for executor in executors:
            executor.start()

        async def all_succeeded() -> bool:
            async with db.sessionmaker() as session:
                left = await session.scalar(
                    select(func.count()).select_from(Job).where(Job.status != JobStatus.succeeded)
                )
            return left == 0

        await wait_until(all_succeeded, timeout=30)
        yield
    finally:
        for executor in executors:
            await executor.stop()
        for engine in engines:
            await engine.dispose()


async def test_two_executors_racing_run_every_job_exactly_once(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    settings = fast_settings(committed_db, tmp_path, worker_enabled=False, job_concurrency=4)
    queue = JobControl(task_registry(), InProcessDispatch())
    async with committed_db.sessionmaker() as session, session.begin():
        for n in range(60):
            await submit_job(session, queue, task="echo", payload={"n": n}, organization_id=None)

    async with executors_until_all_succeeded(committed_db, settings, queue, 2, wait_until):
        pass

    async with committed_db.sessionmaker() as session:
        per_job = (
            await session.execute(
                select(JobAttempt.job_id, func.count()).group_by(JobAttempt.job_id)
            )
        ).all()
        workers = dict(
            (
                await session.execute(
                    select(JobAttempt.worker, func.count()).group_by(JobAttempt.worker)
                )
            ).all()
        )
    assert len(per_job) == 60
    assert {count for _, count in per_job} == {1}, "no job ran twice"
    assert sum(workers.values()) == 60


async def test_notify_emails_the_submitter_at_submit_and_at_the_end(
    committed_db: CommittedDatabase,
    tmp_path: Path,
    wait_until: WaitUntil,
    smtp_server: SmtpServer,
) -> None:
    settings = fast_settings(
        committed_db,
        tmp_path,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_from="jobs@example.org",
    )
    async with live_app(settings, wait_until, email="notify@example.com") as live:
        ok = await live.submit(notify=True)
        bad = await live.submit(notify=True, payload={"will_fail": True}, max_attempts=1)
        quiet = await live.submit()
        await live.until(ok["id"], "succeeded")
        await live.until(bad["id"], "dead")
        await live.until(quiet["id"], "succeeded")
        expected = {
            f"Job {ok['id']} submitted",
            f"Job {ok['id']} succeeded",
            f"Job {bad['id']} submitted",
            f"Job {bad['id']} failed",
        }

        def subjects() -> set[str]:
            return {m.subject for m in smtp_server.received if m.subject.startswith("Job ")}

        await wait_until(lambda: subjects() >= expected, timeout=15)

        async def outbox_drained() -> bool:
            async with committed_db.sessionmaker() as session:
                unsent = await session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.status != OutboxStatus.sent)
                )
            return unsent == 0

        # Once every row is `sent` nothing can be sent again, so the count below is final.
        await wait_until(outbox_drained, timeout=15)
        assert subjects() == expected
        job_mails = [m for m in smtp_server.received if m.subject.startswith("Job ")]
        assert len(job_mails) == 4
        assert all(m.recipients == ["notify@example.com"] for m in job_mails)
        (dead_letter,) = [m for m in job_mails if m.subject == f"Job {bad['id']} failed"]
        assert f"retry it with POST /api/v1/jobs/{bad['id']}/retry." in dead_letter.body


async def test_group_commit_records_a_burst_together_and_isolates_a_bad_result(
    committed_db: CommittedDatabase,
) -> None:
    """Successes finishing together share a transaction; one unstorable result fails only
    its own job."""
    queue = JobControl(task_registry(), InProcessDispatch())
    async with committed_db.sessionmaker() as session, session.begin():
        for n in range(3):
            await submit_job(session, queue, task="echo", payload={"n": n}, organization_id=None)
    claims = await lifecycle.claim_due(committed_db.sessionmaker, "w", limit=3, lease=30)
    writer = SuccessWriter(committed_db.sessionmaker)
    results: list[object] = [{"ok": 1}, {"ok": 2}, {"not json": object()}]
    outcomes = await asyncio.gather(
        *(writer.write(claim, result) for claim, result in zip(claims, results, strict=True)),
        return_exceptions=True,
    )
    assert outcomes[:2] == [JobStatus.succeeded, JobStatus.succeeded]
    assert isinstance(outcomes[2], Exception)
    async with committed_db.sessionmaker() as session:
        statuses = {job.id: job.status for job in await session.scalars(select(Job))}
    assert statuses[claims[0].job_id] is JobStatus.succeeded
    assert statuses[claims[1].job_id] is JobStatus.succeeded
    assert statuses[claims[2].job_id] is JobStatus.running, (
        "still held: the runner records the failure"
    )
