"""Jobs: no-op `echo` throughput and submit-to-start latency for every executor, and
procrastinate's own no-op throughput on the same machine in the same run, so the cost of our
layer (claim, lease, attempt history, outcome) is a ratio.

- throughput: BURST jobs submitted in one transaction; jobs/s from its commit to the last
  job's finish (the finish time as recorded in the database);
- latency: PACED jobs submitted one per transaction at PACE_PER_SECOND; per job, the attempt's
  `started_at` minus the job's `created_at`; median and p99.

- fairness: organization A submits FLOOD jobs in one transaction, then organization B
  submits NEIGHBOUR in another; B's median wait before its jobs start (the attempt's
  `started_at` minus the job's `created_at`) and the throughput of all of them.

Run: pytest tests/benchmark -m performance --benchmark-only --no-cov -p no:randomly
"""

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tandem.db import READ_ONLY, create_engine, create_sessionmaker, utcnow
from tandem.identity.models import Organization
from tandem.jobs.dispatch import InProcessDispatch
from tandem.jobs.distributed import ProcrastinateDispatch, libpq_conninfo
from tandem.jobs.executor import Executor
from tandem.jobs.models import Job, JobAttempt, JobStatus
from tandem.jobs.runner import JobRunner, worker_name
from tandem.jobs.service import JobControl, submit_job
from tandem.migrations import upgrade_to_head
from tandem.settings import Settings
from tandem.tasks import task_registry

BURST = 1500
PACED = 100
PACE_PER_SECOND = 50
FLOOD = 2000
NEIGHBOUR = 20
CONCURRENCY = 8  # TANDEM_JOB_CONCURRENCY's default, and procrastinate's for the comparison
DONE_TIMEOUT = 60.0

# A bare procrastinate worker with one no-op task: the engine's own ceiling.
BARE_WORKER = """
import asyncio, sys
import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(
    conninfo=sys.argv[1], kwargs={"options": "-c search_path=procrastinate"},
    min_size=1, max_size=int(sys.argv[2]) + 2))  # as `tandem worker` sizes its pool

@app.task(name="bench.noop", queue="bench")
async def noop(n: int) -> None:
    return None

async def main() -> None:
    async with app.open_async():
        await app.run_worker_async(queues=["bench"], concurrency=int(sys.argv[2]))

asyncio.run(main())
"""
_DEFER_NOOP = text(
    "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY[ROW('bench', 'bench.noop', 0, "
    "NULL, NULL, CAST(:args AS jsonb), NULL)]::procrastinate.procrastinate_job_to_defer_v1[])"
)


@dataclass
class Figures:
    throughput: float  # jobs/s
    latencies_ms: list[float] = field(default_factory=list)

    def record(self, benchmark: Any, **extra: Any) -> None:
        ordered = sorted(self.latencies_ms)
        benchmark.extra_info.update(
            {
                "jobs_per_second": round(self.throughput),
                "burst_jobs": BURST,
                "latency_median_ms": round(statistics.median(ordered), 1),
                "latency_p99_ms": round(ordered[max(0, round(len(ordered) * 0.99) - 1)], 1),
                "paced_jobs": len(ordered),
                **extra,
            }
        )


@dataclass
class FairnessFigures:
    throughput: float  # jobs/s, both organizations' jobs
    neighbour_waits_ms: list[float]

    def record(self, benchmark: Any, **extra: Any) -> None:
        benchmark.extra_info.update(
            {
                "jobs_per_second": round(self.throughput),
                "flood_jobs": FLOOD,
                "neighbour_jobs": NEIGHBOUR,
                "neighbour_wait_median_ms": round(statistics.median(self.neighbour_waits_ms), 1),
                "neighbour_wait_max_ms": round(max(self.neighbour_waits_ms), 1),
                **extra,
            }
        )


async def _wait_for(condition: Callable[[], Any], timeout: float = DONE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("the benchmark's jobs did not finish in time")
        await asyncio.sleep(0.05)


class JobsDatabase:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url)
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)

    async def prepare(self) -> None:
        await upgrade_to_head(self.engine)
        async with self.engine.begin() as connection:
            await connection.execute(JobAttempt.__table__.delete())
            await connection.execute(Job.__table__.delete())
            if self.url.startswith("postgresql"):
                await connection.execute(text("DELETE FROM procrastinate.procrastinate_jobs"))

    async def submit(
        self,
        queue: JobControl,
        count: int,
        start: int = 0,
        organization_id: uuid.UUID | None = None,
    ) -> datetime:
        """`count` echo jobs in one transaction; returns when it committed."""
        async with self.sessionmaker() as session, session.begin():
            for n in range(start, start + count):
                await submit_job(
                    session, queue, task="echo", payload={"n": n}, organization_id=organization_id
                )
        return utcnow()

    async def organization(self, name: str) -> uuid.UUID:
        async with self.sessionmaker() as session, session.begin():
            organization = Organization(name=name)
            session.add(organization)
        return organization.id

    async def waits_ms(self, organization_id: uuid.UUID) -> list[float]:
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Job.created_at, JobAttempt.started_at)
                    .join(JobAttempt, JobAttempt.job_id == Job.id)
                    .where(Job.organization_id == organization_id, JobAttempt.number == 1)
                )
            ).all()
        return [(started - created).total_seconds() * 1000 for created, started in rows]

    async def measure_fairness(self, queue: JobControl) -> "FairnessFigures":
        """A floods the queue, then B submits a few: how long B waits, and the throughput."""
        flooder, neighbour = await self.organization("A"), await self.organization("B")
        started = utcnow()
        await self.submit(queue, FLOOD, organization_id=flooder)
        await self.submit(queue, NEIGHBOUR, start=FLOOD, organization_id=neighbour)
        await _wait_for(lambda: self._all_done(FLOOD + NEIGHBOUR), timeout=120)
        seconds = (await self.last_finish() - started).total_seconds()
        return FairnessFigures((FLOOD + NEIGHBOUR) / seconds, await self.waits_ms(neighbour))

    async def finished(self) -> int:
        async with self.sessionmaker() as session:
            await session.connection(execution_options=READ_ONLY)
            count = await session.scalar(
                select(func.count()).select_from(Job).where(Job.status == JobStatus.succeeded)
            )
        return count or 0

    async def last_finish(self) -> datetime:
        async with self.sessionmaker() as session:
            last = await session.scalar(select(func.max(Job.finished_at)))
        assert last is not None
        return last

    async def latencies_ms(self, since: datetime) -> list[float]:
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Job.created_at, JobAttempt.started_at)
                    .join(JobAttempt, JobAttempt.job_id == Job.id)
                    .where(Job.created_at >= since, JobAttempt.number == 1)
                )
            ).all()
        return [(started - created).total_seconds() * 1000 for created, started in rows]

    async def measure(self, queue: JobControl) -> Figures:
        # Throughput: one burst.
        committed = await self.submit(queue, BURST)
        await _wait_for(lambda: self._all_done(BURST))
        throughput = BURST / (await self.last_finish() - committed).total_seconds()
        # Latency: a steady trickle, one job per transaction.
        paced_from = utcnow()
        for n in range(PACED):
            await self.submit(queue, 1, start=BURST + n)
            await asyncio.sleep(1 / PACE_PER_SECOND)
        await _wait_for(lambda: self._all_done(BURST + PACED))
        return Figures(throughput, await self.latencies_ms(paced_from))

    async def _all_done(self, expected: int) -> bool:
        return await self.finished() >= expected

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def jobs_database(url: str) -> AsyncIterator[JobsDatabase]:
    db = JobsDatabase(url)
    await db.prepare()
    try:
        yield db
    finally:
        await db.dispose()


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, database_url=url, data_dir=tmp_path)  # type: ignore[call-arg]


async def _embedded(url: str, tmp_path: Path, fairness: bool = False) -> Any:
    async with jobs_database(url) as db:
        settings = _settings(url, tmp_path)
        dispatch = InProcessDispatch()
        runner = JobRunner(
            db.sessionmaker, task_registry(), settings, dispatch, worker_name("bench")
        )
        executor = Executor(runner, dispatch, concurrency=CONCURRENCY)
        executor.start()
        queue = JobControl(task_registry(), dispatch)
        try:
            return await (db.measure_fairness(queue) if fairness else db.measure(queue))
        finally:
            await executor.stop()


def _environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(TANDEM_DATABASE_URL=url, TANDEM_JOB_EXECUTOR="procrastinate")
    return env


@dataclass
class Processes:
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, command: list[str], tmp_path: Path, env: dict[str, str]) -> None:
        log = (tmp_path / f"process-{len(self.started)}.log").open("wb")
        self.started.append(
            subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
        )

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _registered_workers(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM procrastinate.procrastinate_workers")
        )
    return int(count or 0)


async def _tandem_workers(url: str, tmp_path: Path, workers: int, fairness: bool = False) -> Any:
    processes = Processes()
    async with jobs_database(url) as db:
        try:
            async with db.engine.begin() as connection:
                await connection.execute(text("DELETE FROM procrastinate.procrastinate_workers"))
            for _ in range(workers):
                command = [sys.executable, "-m", "tandem", "worker"]
                processes.start(
                    [*command, "--concurrency", str(CONCURRENCY)], tmp_path, _environment(url)
                )

            async def ready() -> bool:
                return await _registered_workers(db.engine) == workers

            await _wait_for(ready, timeout=30)
            queue = JobControl(task_registry(), ProcrastinateDispatch())
            return await (db.measure_fairness(queue) if fairness else db.measure(queue))
        finally:
            processes.stop()


async def _bare_procrastinate(url: str, tmp_path: Path) -> Figures:
    """The same burst and trickle through a bare procrastinate worker and a no-op task."""
    processes = Processes()
    async with jobs_database(url) as db:
        try:
            async with db.engine.begin() as connection:
                await connection.execute(text("DELETE FROM procrastinate.procrastinate_workers"))
                await connection.execute(text("DELETE FROM procrastinate.procrastinate_jobs"))
            command = [sys.executable, "-c", BARE_WORKER, libpq_conninfo(url), str(CONCURRENCY)]
            processes.start(command, tmp_path, _environment(url))

            async def ready() -> bool:
                return await _registered_workers(db.engine) == 1

            await _wait_for(ready, timeout=30)

            async def defer(count: int, start: int) -> datetime:
                async with db.engine.begin() as connection:
                    for n in range(start, start + count):
                        await connection.execute(_DEFER_NOOP, {"args": f'{{"n": {n}}}'})
                return utcnow()

            async def done(expected: int) -> bool:
                async with db.engine.connect() as connection:
                    count = await connection.scalar(
                        text(
                            "SELECT count(*) FROM procrastinate.procrastinate_jobs "
                            "WHERE status = 'succeeded'"
                        )
                    )
                return int(count or 0) >= expected

            committed = await defer(BURST, 0)
            await _wait_for(lambda: done(BURST))
            async with db.engine.connect() as connection:
                last = await connection.scalar(
                    text(
                        "SELECT max(at) FROM procrastinate.procrastinate_events "
                        "WHERE type = 'succeeded'"
                    )
                )
            throughput = BURST / (last - committed).total_seconds()

            for n in range(PACED):
                await defer(1, BURST + n)
                await asyncio.sleep(1 / PACE_PER_SECOND)
            await _wait_for(lambda: done(BURST + PACED))
            async with db.engine.connect() as connection:
                rows = (
                    await connection.execute(
                        text(
                            "SELECT s.at - d.at FROM procrastinate.procrastinate_events d "
                            "JOIN procrastinate.procrastinate_events s ON s.job_id = d.job_id "
                            "WHERE d.type = 'deferred' AND s.type = 'started' "
                            "AND (SELECT (args->>'n')::int FROM procrastinate.procrastinate_jobs "
                            "     WHERE id = d.job_id) >= :first"
                        ),
                        {"first": BURST},
                    )
                ).all()
            return Figures(throughput, [row[0].total_seconds() * 1000 for row in rows])
        finally:
            processes.stop()


# --- the benchmarks ---------------------------------------------------------------------------
# Figures are collected once per module so the ratio compares runs of the same session.

RESULTS: dict[str, Figures] = {}


@pytest.fixture(scope="module")
def postgres_bench_url(create_postgres_database: Callable[[], str]) -> str:
    return create_postgres_database()


def _run(benchmark: Any, name: str, scenario: Callable[[], Any]) -> Figures:
    def once() -> None:
        RESULTS[name] = asyncio.run(scenario())

    benchmark.pedantic(once, rounds=1, iterations=1)
    return RESULTS[name]


def test_embedded_executor_on_sqlite(benchmark: Any, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
    figures = _run(benchmark, "embedded-sqlite", lambda: _embedded(url, tmp_path))
    figures.record(benchmark, executor="embedded", database="sqlite", target_jobs_per_second=500)


def test_embedded_executor_on_postgresql(
    benchmark: Any, tmp_path: Path, postgres_bench_url: str
) -> None:
    figures = _run(
        benchmark, "embedded-postgresql", lambda: _embedded(postgres_bench_url, tmp_path)
    )
    figures.record(benchmark, executor="embedded", database="postgresql")


def test_procrastinate_bare_no_op(benchmark: Any, tmp_path: Path, postgres_bench_url: str) -> None:
    figures = _run(
        benchmark, "procrastinate", lambda: _bare_procrastinate(postgres_bench_url, tmp_path)
    )
    figures.record(benchmark, executor="procrastinate alone (no-op task)", workers=1)


@pytest.mark.parametrize(
    "workers", [pytest.param(1, id="1-worker"), pytest.param(2, id="2-workers")]
)
def test_tandem_workers_on_postgresql(
    benchmark: Any, tmp_path: Path, postgres_bench_url: str, workers: int
) -> None:
    figures = _run(
        benchmark,
        f"workers-{workers}",
        lambda: _tandem_workers(postgres_bench_url, tmp_path, workers),
    )
    extra: dict[str, Any] = {"executor": "tandem worker", "workers": workers}
    bare = RESULTS.get("procrastinate")
    if bare is not None and workers == 1:
        # The target: our layer costs under 25 % of the engine's own throughput.
        extra["ratio_to_procrastinate"] = round(figures.throughput / bare.throughput, 2)
    figures.record(benchmark, **extra)


# --- fairness between organizations -------------------------------------------------------


def _run_fairness(benchmark: Any, scenario: Callable[[], Any]) -> FairnessFigures:
    figures: list[FairnessFigures] = []
    benchmark.pedantic(lambda: figures.append(asyncio.run(scenario())), rounds=1, iterations=1)
    return figures[0]


def test_fairness_embedded_on_sqlite(benchmark: Any, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
    figures = _run_fairness(benchmark, lambda: _embedded(url, tmp_path, fairness=True))
    figures.record(benchmark, executor="embedded", database="sqlite")


def test_fairness_embedded_on_postgresql(
    benchmark: Any, tmp_path: Path, postgres_bench_url: str
) -> None:
    figures = _run_fairness(
        benchmark, lambda: _embedded(postgres_bench_url, tmp_path, fairness=True)
    )
    figures.record(benchmark, executor="embedded", database="postgresql")


def test_fairness_tandem_worker(benchmark: Any, tmp_path: Path, postgres_bench_url: str) -> None:
    figures = _run_fairness(
        benchmark, lambda: _tandem_workers(postgres_bench_url, tmp_path, 1, fairness=True)
    )
    figures.record(benchmark, executor="tandem worker", workers=1)
