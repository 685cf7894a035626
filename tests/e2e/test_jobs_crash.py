"""Crashes with real processes: `kill -9` the process running a job and the job still
completes, once, with the crash recorded as an attempt; two `tandem worker` processes share
a queue and run every job exactly once; SIGTERM hands a running job back."""

import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from sqlalchemy import func, select

from tandem.db import create_engine, create_sessionmaker
from tandem.jobs.distributed import ProcrastinateDispatch
from tandem.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tandem.jobs.service import JobControl, submit_job
from tandem.tasks import task_registry
from tests.e2e.conftest import (
    ServerProcess,
    clean_environment,
    tandem_command,
    wait_until_serving,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WaitUntil = Callable[..., Awaitable[Any]]
StartServer = Callable[..., ServerProcess]
PASSWORD = "correct horse battery"
# Short leases so a crash is noticed in seconds; fast retries and polling.
FAST_JOBS = {
    "TANDEM_JOB_LEASE_SECONDS": "2",
    "TANDEM_JOB_RETRY_BASE_SECONDS": "0.1",
    "TANDEM_JOB_POLL_SECONDS": "0.1",
}


@dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    log_path: Path
    log_file: TextIO

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """`tandem worker` processes, their output in a file each (a pipe could fill up)."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], *args: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        log_file = log_path.open("w")
        process = subprocess.Popen(
            tandem_command("worker", *args),
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        worker = WorkerProcess(process, log_path, log_file)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


async def wait_until_working(worker: WorkerProcess, wait_until: WaitUntil) -> None:
    def started() -> bool:
        if worker.process.poll() is not None:
            raise AssertionError(f"tandem worker exited early:\n{worker.log()}")
        return " started (concurrency" in worker.log()

    await wait_until(started, timeout=30)


@dataclass
class Api:
    client: httpx.AsyncClient
    headers: dict[str, str]

    async def submit(self, **payload: Any) -> str:
        response = await self.client.post(
            "/api/v1/jobs", json={"task": "echo", "payload": payload}, headers=self.headers
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/jobs/{job_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def until(
        self, job_id: str, status: str, wait_until: WaitUntil, timeout: float = 30
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["status"] == status else None

        result: dict[str, Any] = await wait_until(reached, timeout=timeout)
        return result


@asynccontextmanager
async def api(server: ServerProcess, token: str | None = None) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        if token is None:
            response = await client.post(
                "/api/v1/auth/register",
                json={
                    "email": "ops@example.com",
                    "password": PASSWORD,
                    "full_name": "Ops",
                    "organization_name": "Crash Test",
                },
            )
            assert response.status_code == 201, response.text
            token = response.json()["access_token"]
        yield Api(client, {"Authorization": f"Bearer {token}"})


def outcomes(job: dict[str, Any]) -> list[str]:
    return [attempt["outcome"] for attempt in job["attempt_history"]]


def assert_completed_once_after_the_crash(
    done: dict[str, Any], crashed_pid: int, recovered_pid: int
) -> None:
    """The killed process's attempt is recorded as a failed one; the next process ran it."""
    assert done["result"] == {"duration_seconds": 3, "note": "crash me"}
    assert outcomes(done) == ["lease_expired", "succeeded"]
    assert done["attempts"] == 2, "the crash used up an attempt"
    crashed, succeeded = done["attempt_history"]
    assert crashed["error"].startswith("Lease expired")
    assert f":{crashed_pid}:" in crashed["worker"]
    assert f":{recovered_pid}:" in succeeded["worker"]


async def test_embedded_executor_on_sqlite_survives_kill_9(
    start_server: StartServer, wait_until: WaitUntil
) -> None:
    env = clean_environment(**FAST_JOBS)
    first = start_server(env=env)
    await wait_until_serving(first, wait_until)
    async with api(first) as client:
        job_id = await client.submit(duration_seconds=3, note="crash me")
        running = await client.until(job_id, "running", wait_until)
        token = client.headers["Authorization"].removeprefix("Bearer ")
    crashed_worker = running["attempt_history"][0]["worker"]
    assert f":{first.process.pid}:" in crashed_worker

    first.process.kill()  # SIGKILL: no shutdown, no hand-back; the lease is left to expire
    assert first.process.wait(timeout=10) == -signal.SIGKILL

    second = start_server(env=env)  # same working directory: same ./tandem.db
    await wait_until_serving(second, wait_until)
    async with api(second, token) as client:
        done = await client.until(job_id, "succeeded", wait_until, timeout=30)
    assert_completed_once_after_the_crash(done, first.process.pid, second.process.pid)
    assert done["attempt_history"][0]["worker"] == crashed_worker


async def test_tandem_worker_on_postgresql_survives_kill_9(
    start_server: StartServer,
    start_worker: Callable[..., WorkerProcess],
    create_postgres_database: Callable[[], str],
    free_tcp_port_factory: Callable[[], int],
    wait_until: WaitUntil,
) -> None:
    env = clean_environment(
        TANDEM_DATABASE_URL=create_postgres_database(),
        TANDEM_JOB_EXECUTOR="procrastinate",
        **FAST_JOBS,
    )
    server = start_server("--migrate", "--no-worker", env=env)
    await wait_until_serving(server, wait_until)
    first = start_worker(env, "--concurrency", "2")
    await wait_until_working(first, wait_until)

    async with api(server) as client:
        job_id = await client.submit(duration_seconds=3, note="crash me")
        running = await client.until(job_id, "running", wait_until)
        assert running["attempt_history"][0]["worker"].startswith("worker:")
        assert f":{first.pid}:" in running["attempt_history"][0]["worker"]

        first.process.kill()
        assert first.process.wait(timeout=10) == -signal.SIGKILL
        metrics_port = free_tcp_port_factory()
        second = start_worker(env, "--metrics-port", str(metrics_port))
        await wait_until_working(second, wait_until)

        done = await client.until(job_id, "succeeded", wait_until, timeout=30)
        scraped = await client.client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert scraped.status_code == 200, scraped.text
    assert 'tandem_jobs_finished_total{status="succeeded",task="echo"} 1.0' in scraped.text
    assert_completed_once_after_the_crash(done, first.pid, second.pid)
    succeeded = done["attempt_history"][1]
    assert f":{server.process.pid}:" not in succeeded["worker"], "--no-worker runs no jobs"


async def test_sigterm_hands_a_running_job_back_and_the_worker_exits_cleanly(
    start_server: StartServer,
    start_worker: Callable[..., WorkerProcess],
    create_postgres_database: Callable[[], str],
    wait_until: WaitUntil,
) -> None:
    env = clean_environment(
        TANDEM_DATABASE_URL=create_postgres_database(),
        TANDEM_JOB_EXECUTOR="procrastinate",
        **FAST_JOBS,
    )
    server = start_server("--migrate", "--no-worker", env=env)
    await wait_until_serving(server, wait_until)
    worker = start_worker(env)
    await wait_until_working(worker, wait_until)
    async with api(server) as client:
        job_id = await client.submit(duration_seconds=30)
        await client.until(job_id, "running", wait_until)
        worker.process.send_signal(signal.SIGTERM)
        # Half the lease (1 s) to finish, then handed back: well inside the lease.
        assert worker.process.wait(timeout=10) == 0, worker.log()
        handed_back = await client.job(job_id)
    assert handed_back["status"] == "pending"
    assert handed_back["attempts"] == 0, "a hand-back does not use up an attempt"
    assert outcomes(handed_back) == ["handed_back"]
    assert "stopped" in worker.log()


async def test_two_workers_share_200_jobs_and_run_each_exactly_once(
    start_worker: Callable[..., WorkerProcess],
    create_postgres_database: Callable[[], str],
    wait_until: WaitUntil,
) -> None:
    url = create_postgres_database()
    env = clean_environment(TANDEM_DATABASE_URL=url, TANDEM_JOB_EXECUTOR="procrastinate")
    migrated = subprocess.run(
        tandem_command("migrate"), env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    workers = [start_worker(env, "--concurrency", "4") for _ in range(2)]
    for worker in workers:
        await wait_until_working(worker, wait_until)

    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    try:
        queue = JobControl(task_registry(), ProcrastinateDispatch())
        async with sessionmaker() as session, session.begin():
            for n in range(200):
                await submit_job(
                    session,
                    queue,
                    task="echo",
                    payload={"n": n, "duration_seconds": 0.02},
                    organization_id=None,
                )

        async def all_done() -> bool:
            async with sessionmaker() as session:
                finished = await session.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.status.in_([JobStatus.succeeded, JobStatus.dead]))
                )
            return finished == 200

        await wait_until(all_done, timeout=60)
        async with sessionmaker() as session:
            jobs = (await session.scalars(select(Job))).all()
            attempts = (await session.scalars(select(JobAttempt))).all()
    finally:
        await engine.dispose()

    assert {job.status for job in jobs} == {JobStatus.succeeded}
    assert sorted(job.result["n"] for job in jobs) == list(range(200))
    per_job = Counter(attempt.job_id for attempt in attempts)
    assert set(per_job.values()) == {1}, "every job ran exactly once"
    assert {attempt.outcome for attempt in attempts} == {AttemptOutcome.succeeded}
    per_worker = Counter(attempt.worker.split(":")[2] for attempt in attempts)
    assert set(per_worker) == {str(w.pid) for w in workers}, f"both worked: {per_worker}"
    assert sum(per_worker.values()) == 200
    for worker in workers:
        assert worker.stop() == 0, worker.log()


async def test_worker_concurrency_caps_the_jobs_running_at_once(
    start_worker: Callable[..., WorkerProcess],
    create_postgres_database: Callable[[], str],
    wait_until: WaitUntil,
) -> None:
    """Issue 12, finding 7: `--concurrency 3` ran up to 3 x 3 jobs at once (every
    procrastinate slot claimed for every free slot). Sampled in the database while 24 jobs
    of 0.4 s run: never more than 3 `running`, and 3 reached."""
    url = create_postgres_database()
    env = clean_environment(
        TANDEM_DATABASE_URL=url, TANDEM_JOB_EXECUTOR="procrastinate", **FAST_JOBS
    )
    migrated = subprocess.run(
        tandem_command("migrate"), env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    worker = start_worker(env, "--concurrency", "3")
    await wait_until_working(worker, wait_until)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    samples: list[int] = []
    try:
        queue = JobControl(task_registry(), ProcrastinateDispatch())
        async with sessionmaker() as session, session.begin():
            for n in range(24):
                await submit_job(
                    session,
                    queue,
                    task="echo",
                    payload={"n": n, "duration_seconds": 0.4},
                    organization_id=None,
                )

        async def all_done() -> bool:
            async with sessionmaker() as session:
                counts = dict(
                    (
                        await session.execute(select(Job.status, func.count()).group_by(Job.status))
                    ).all()
                )
            samples.append(counts.get(JobStatus.running, 0))
            return counts.get(JobStatus.succeeded, 0) == 24

        await wait_until(all_done, timeout=60, interval=0.01)
    finally:
        await engine.dispose()
    assert max(samples) == 3, f"running jobs sampled: {sorted(set(samples))}"
    assert worker.stop() == 0, worker.log()
