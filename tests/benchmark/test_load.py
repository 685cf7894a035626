"""`tandem serve` under load, beside a bare FastAPI app answering the same JSON (issue 14).

Both servers are real processes on 127.0.0.1 (same venv, same uvicorn); `wrk` (Debian's
package) drives them one after the other in the same run, three times, and every Tandem case
is reported as requests/s, p50 and p99, and as a ratio to the bare app's requests/s measured
in the same repetition. The median of the three repetitions is what counts. A second
yardstick, `floor_app`, does only the statements of a job's read, of a page of jobs and of a
job's insert, on each database: the most any request doing them could reach here.

Run: pytest tests/benchmark/test_load.py -m performance --benchmark-only --no-cov -s
(PostgreSQL cases need TANDEM_TEST_POSTGRES_URL; without `wrk` the module is skipped.)
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import make_url

from tandem.agents import registry, run_agent
from tandem.agents.offline import OfflineModel
from tandem.testing import wait_for

WRK = shutil.which("wrk")
pytestmark = pytest.mark.skipif(WRK is None, reason="wrk is not installed (apt-get install wrk)")

# TANDEM_BENCH_REPETITIONS / TANDEM_BENCH_SECONDS shorten a run while working on the code.
REPETITIONS = int(os.environ.get("TANDEM_BENCH_REPETITIONS", "3"))
SECONDS = int(os.environ.get("TANDEM_BENCH_SECONDS", "4"))
CONNECTIONS = 16
AGENT_CLIENTS = 20
SUMMARY = {
    "agent_id": "summarizer",
    "input_text": (
        "The city council approved a new budget on Tuesday. The budget raises spending on "
        "public transport by ten percent. Critics said the plan ignores rising housing costs."
    ),
}
UNLIMITED = "100000000/minute"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _start(command: list[str], workdir: Path, env: dict[str, str], name: str) -> Server:
    port = _free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited early:\n{log.read_text()}")
        try:
            return httpx.get(f"{server.url}/health", timeout=1).status_code in (200, 404)
        except httpx.TransportError:
            return False

    try:
        anyio.run(partial(wait_for, answers, timeout=120, interval=0.2))
    except TimeoutError:
        server.stop()
        raise AssertionError(f"{name} did not answer within 120 s:\n{log.read_text()}") from None
    return server


def tandem_environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(
        {
            k[len("TANDEM_BENCH_SERVER_") :]: v
            for k, v in os.environ.items()
            if k.startswith("TANDEM_BENCH_SERVER_")
        }
    )
    env.update(
        TANDEM_DATABASE_URL=database_url,
        TANDEM_JWT_SECRET=secrets.token_urlsafe(48),
        TANDEM_LOG_LEVEL="WARNING",
        # Connections for every request in flight: none opened and closed per request.
        TANDEM_DATABASE_POOL_SIZE=str(max(CONNECTIONS, AGENT_CLIENTS)),
        TANDEM_RATE_LIMIT_AGENTS=UNLIMITED,
        TANDEM_RATE_LIMIT_AGENTS_ORGANIZATION=UNLIMITED,
        TANDEM_RATE_LIMIT_JOBS=UNLIMITED,
        # Twenty synchronous runs of one organization run at once, not six.
        TANDEM_JOB_CONCURRENCY=str(AGENT_CLIENTS),
        TANDEM_JOB_ORG_CONCURRENCY=str(AGENT_CLIENTS),
        **extra,
    )
    return env


def start_tandem(workdir: Path, env: dict[str, str], *args: str) -> Server:
    return _start([sys.executable, "-m", "tandem", "serve", *args], workdir, env, "tandem")


def start_bare(workdir: Path, app: str = "bare_app", **extra: str) -> Server:
    command = [sys.executable, "-m", "uvicorn", f"tests.benchmark.{app}:app"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), **extra)
    return _start([*command, "--log-level", "warning"], workdir, env, app)


# --- wrk ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    body: dict[str, Any] | None = None
    connections: int = CONNECTIONS


@dataclass(frozen=True)
class Measured:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _latency_ms(output: str, percent: int) -> float:
    match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    assert match, output
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def run_wrk(base_url: str, case: Case, workdir: Path, seconds: int = SECONDS) -> Measured:
    script = workdir / "wrk.lua"
    lines = [f"wrk.method = {json.dumps(case.method)}"]
    headers = dict(case.headers)
    if case.body is not None:
        lines.append(f"wrk.body = {json.dumps(json.dumps(case.body))}")
        headers["Content-Type"] = "application/json"
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    command = [WRK or "wrk", "-t1", f"-c{case.connections}", f"-d{seconds}s", "--latency"]
    completed = subprocess.run(
        [*command, "-s", str(script), base_url + case.path],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    output = completed.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rate, output
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Measured(float(rate.group(1)), _latency_ms(output, 50), _latency_ms(output, 99), errors)


# --- the accounts and rows the cases read --------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    reads: list[Case]
    writes: list[Case]
    organization_id: str
    job_id: str


def prepare_cases(base_url: str) -> Prepared:
    """Registers an admin, makes an API key and a job: the cases that use them."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        account = {
            "email": f"load-{secrets.token_hex(4)}@example.com",
            "password": "a long enough password",
            "full_name": "Load",
        }
        registered = client.post("/api/v1/auth/register", json=account)
        assert registered.status_code == 201, registered.text
        bearer = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        key_body = {"name": "load", "scopes": ["agent:read", "jobs:read", "jobs:write"]}
        created = client.post("/api/v1/api-keys", json=key_body, headers=bearer)
        assert created.status_code == 201, created.text
        key = {"X-API-Key": created.json()["key"]}
        job = client.post("/api/v1/jobs", json={"task": "echo"}, headers=bearer)
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        job_path = f"/api/v1/jobs/{job_id}"
        organization_id = client.get("/api/v1/users/me", headers=bearer).json()["organization_id"]
    reads = [
        Case("GET /health", "/health"),
        Case("GET /api/v1/agents, API key", "/api/v1/agents", key),
        Case("GET /api/v1/agents, bearer", "/api/v1/agents", bearer),
        Case("GET /api/v1/users/me, bearer", "/api/v1/users/me", bearer),
        Case("GET /api/v1/jobs?limit=20, API key", "/api/v1/jobs?limit=20", key),
        Case("GET /api/v1/jobs/{id}, API key", job_path, key),
        Case("GET /api/v1/jobs/{id}, bearer", job_path, bearer),
    ]
    writes = [
        Case("POST /api/v1/jobs, bearer", "/api/v1/jobs", bearer, "POST", {"task": "echo"}),
        Case(
            f"POST /api/v1/agents/run (sync, {AGENT_CLIENTS} clients), bearer",
            "/api/v1/agents/run",
            bearer,
            "POST",
            SUMMARY,
            AGENT_CLIENTS,
        ),
    ]
    return Prepared(reads, writes, organization_id, job_id)


def floor_label(label: str) -> str:
    return f"{label} floor (bare FastAPI, the statement alone)"


def start_floor(workdir: Path, database_url: str, prepared: Prepared) -> tuple[Server, list[Case]]:
    """`floor_app` on Tandem's database, and its cases: the job Tandem's detail cases read,
    the page of jobs its list reads (the same organization's), and a job's insert."""
    url = make_url(database_url)
    url = url.set(drivername=url.get_backend_name())  # the driver's own URL
    server = start_bare(
        workdir,
        "floor_app",
        TANDEM_BENCH_FLOOR_DATABASE_URL=url.render_as_string(hide_password=False),
    )
    floor_cases = [
        Case(
            "GET /floor/organizations/{id}/jobs?limit=20",
            f"/floor/organizations/{prepared.organization_id}/jobs?limit=20",
        ),
        Case("GET /floor/jobs/{id}", f"/floor/jobs/{prepared.job_id}"),
        Case("POST /floor/jobs", "/floor/jobs", method="POST", body={"task": "echo"}),
    ]
    return server, floor_cases


def wait_for_idle_jobs(base_url: str, headers: dict[str, str], timeout: float = 120) -> None:
    """The jobs a write case queued are run before the next repetition measures."""
    with httpx.Client(base_url=base_url, timeout=30, headers=headers) as client:

        def idle() -> bool:
            pending = client.get("/api/v1/jobs?status=pending&limit=1").json()["count"]
            running = client.get("/api/v1/jobs?status=running&limit=1").json()["count"]
            return int(pending) + int(running) == 0

        anyio.run(partial(wait_for, idle, timeout=timeout, interval=0.5))


# --- the runs ------------------------------------------------------------------------------


Results = dict[str, list[tuple[Measured, float]]]  # case -> [(measured, bare req/s)] per rep


def measure(
    bare: Server, servers: dict[str, Server], cases: dict[str, list[Case]], workdir: Path
) -> Results:
    """Each repetition measures the bare app, then every case of every server."""
    results: Results = {}
    for _ in range(REPETITIONS):
        bare_measured = run_wrk(bare.url, Case("bare", "/api/v1/agents"), workdir)
        bare_rate = bare_measured.requests_per_second
        results.setdefault("bare FastAPI: GET /api/v1/agents", []).append(
            (bare_measured, bare_rate)
        )
        for label, server in servers.items():
            for case in cases[label]:
                measured = run_wrk(server.url, case, workdir)
                results.setdefault(f"{label}: {case.name}", []).append((measured, bare_rate))
                if case.method == "POST" and case.path.startswith("/api/"):
                    wait_for_idle_jobs(server.url, case.headers)
    return results


def summarise(results: Results) -> list[dict[str, Any]]:
    rows = []
    for name, reps in results.items():
        rows.append(
            {
                "case": name,
                "requests_per_second": round(
                    statistics.median(m.requests_per_second for m, _ in reps)
                ),
                "p50_ms": round(statistics.median(m.p50_ms for m, _ in reps), 2),
                "p99_ms": round(statistics.median(m.p99_ms for m, _ in reps), 2),
                "ratio_to_bare": round(
                    statistics.median(m.requests_per_second / bare for m, bare in reps), 3
                ),
                "errors": sum(m.errors for m, _ in reps),
            }
        )
    return rows


async def _agent_alone_seconds(runs: int = 400) -> float:
    """CPU seconds of one offline summarizer run called directly, in this process, by
    AGENT_CLIENTS callers at once as the case has them: the pydantic-ai agent and the offline
    model, nothing of Tandem's around them."""
    model = OfflineModel(registry.offline_skills())

    async def caller(count: int) -> None:
        for _ in range(count):
            await run_agent("summarizer", SUMMARY["input_text"], {}, model=model)

    async def together(each: int) -> None:
        async with anyio.create_task_group() as group:
            for _ in range(AGENT_CLIENTS):
                group.start_soon(caller, each)

    await together(2)
    each = max(1, runs // AGENT_CLIENTS)
    started = time.process_time()
    await together(each)
    return (time.process_time() - started) / (each * AGENT_CLIENTS)


def agent_floor() -> dict[str, float]:
    """What the synchronous-run targets are up against on this machine: one process runs at
    most 1 / (the agent's own CPU) runs a second, so by Little's law AGENT_CLIENTS clients
    waiting on it see a median of at least AGENT_CLIENTS times the agent's CPU."""
    alone = anyio.run(_agent_alone_seconds)
    return {
        "agent_alone_ms": round(alone * 1000, 2),
        "runs_per_second_ceiling": round(1 / alone),
        "p50_floor_ms": round(AGENT_CLIENTS * alone * 1000),
    }


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | req/s | p50 ms | p99 ms | ratio to bare | errors |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['requests_per_second']:,} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['ratio_to_bare']} | {row['errors']} |"
        )
    return "\n".join(lines)


@pytest.fixture
def database_urls(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    urls = {"SQLite": f"sqlite+aiosqlite:///{tmp_path}/load.db"}
    if os.environ.get("TANDEM_TEST_POSTGRES_URL"):
        create: Callable[[], str] = request.getfixturevalue("create_postgres_database")
        urls["PostgreSQL"] = create()
    return urls


@pytest.fixture
def started() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.stop()


def test_request_path_against_bare_fastapi(
    benchmark: Any, tmp_path: Path, database_urls: dict[str, str], started: list[Server]
) -> None:
    bare = start_bare(tmp_path)
    started.append(bare)
    servers: dict[str, Server] = {}
    cases: dict[str, list[Case]] = {}
    for label, url in database_urls.items():
        workdir = tmp_path / label
        workdir.mkdir()
        server = start_tandem(workdir, tandem_environment(url), "--migrate")
        started.append(server)
        prepared = prepare_cases(server.url)
        # The floor first: in each repetition its list counts the jobs Tandem's list counts
        # (the earlier repetitions' writes), its own inserts going to another table.
        floor, cases[floor_label(label)] = start_floor(workdir, url, prepared)
        started.append(floor)
        servers[floor_label(label)] = floor
        servers[label] = server
        cases[label] = prepared.reads + prepared.writes

    results: Results = {}
    benchmark.pedantic(
        lambda: results.update(measure(bare, servers, cases, tmp_path)), rounds=1, iterations=1
    )
    rows = summarise(results)
    benchmark.extra_info["rows"] = rows
    agent = agent_floor()
    benchmark.extra_info["agent_floor"] = agent
    print("\n" + report(rows))
    print(
        f"\nThe offline agent alone ({AGENT_CLIENTS} at once): {agent['agent_alone_ms']} ms "
        "of CPU a run, so one "
        f"process runs at most {agent['runs_per_second_ceiling']:.0f} a second, and "
        f"{AGENT_CLIENTS} clients see a p50 of at least {agent['p50_floor_ms']:.0f} ms."
    )
    assert all(row["errors"] == 0 for row in rows), report(rows)


def test_processes_on_postgresql(
    benchmark: Any,
    tmp_path: Path,
    database_urls: dict[str, str],
    started: list[Server],
    redis_url: str,
) -> None:
    """`tandem serve --workers 1` and `--workers 2` on one PostgreSQL database, reads only."""
    if "PostgreSQL" not in database_urls:
        pytest.skip("TANDEM_TEST_POSTGRES_URL is not set")
    bare = start_bare(tmp_path)
    started.append(bare)
    servers: dict[str, Server] = {}
    cases: dict[str, list[Case]] = {}
    env = tandem_environment(database_urls["PostgreSQL"], TANDEM_REDIS_URL=redis_url)
    for workers in (1, 2):
        workdir = tmp_path / f"workers-{workers}"
        workdir.mkdir()
        label = f"PostgreSQL, --workers {workers}"
        server = start_tandem(workdir, env, "--migrate", "--workers", str(workers))
        started.append(server)
        servers[label] = server
        reads = prepare_cases(server.url).reads
        cases[label] = [case for case in reads if "/health" not in case.path]

    results: Results = {}
    benchmark.pedantic(
        lambda: results.update(measure(bare, servers, cases, tmp_path)), rounds=1, iterations=1
    )
    rows = summarise(results)
    benchmark.extra_info["rows"] = rows
    print("\n" + report(rows))
    assert all(row["errors"] == 0 for row in rows), report(rows)
