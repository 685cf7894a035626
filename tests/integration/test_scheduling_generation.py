"""Schedule generation end to end: POST generate -> a real job on the embedded executor ->
CP-SAT -> the rule engine -> the schedule `generated` (or `failed` with the reason)."""

import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tandem.app import create_app
from tandem.jobs.registry import TaskContext
from tandem.scheduling import solver
from tandem.scheduling.domain import Assignment, AssignmentRole, ScheduleProblem
from tandem.scheduling.tasks import generate_schedule
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.integration.scheduling_setup import SchedulingApi

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]
MONDAY = date(2027, 3, 1)
SUNDAY = MONDAY + timedelta(days=6)


async def _finished(api: SchedulingApi, schedule_id: str, wait_until: WaitUntil) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        response = await api.client.get(f"/api/v1/schedules/{schedule_id}", headers=api.headers)
        body: dict[str, Any] = response.json()
        return body if body["status"] in {"generated", "failed"} else None

    result: dict[str, Any] = await wait_until(done, timeout=60)
    return result


async def test_a_generated_schedule_keeps_every_rule(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    api = live
    await api.blocks(MONDAY, SUNDAY)
    rotation = await api.rotation(
        name="Clinic", min_residents=1, max_residents=2, requires_supervision=True
    )
    for level in (1, 2, 2, 3):
        await api.person("resident", pgy_level=level)
    for _ in range(2):
        await api.person("faculty")
    schedule = await api.schedule(MONDAY, SUNDAY)

    response = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate",
        json={"timeout_seconds": 20},
        headers=api.headers,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert set(response.json()) == {"job_id"}

    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["status"] == "generated", generated["error"]
    assert generated["job_id"] == job_id
    assert generated["error"] is None
    statistics = generated["statistics"]
    assert statistics["status"] in {"optimal", "feasible"}
    assert statistics["timeout_seconds"] == 20
    assert statistics["gap"] is not None
    assert statistics["gap"] >= 0
    assert statistics["wall_seconds"] > 0
    assert generated["progress"]["phase"] == "done"

    listed = (
        await api.client.get(
            f"/api/v1/schedules/{schedule['id']}/assignments",
            params={"limit": 200},
            headers=api.headers,
        )
    ).json()
    assert listed["count"] == statistics["assignments"] > 0
    assert {a["rotation_id"] for a in listed["items"]} == {rotation["id"]}
    residents_per_block: dict[str, int] = {}
    for a in listed["items"]:
        if a["role"] == "primary":
            residents_per_block[a["block_id"]] = residents_per_block.get(a["block_id"], 0) + 1
    assert len(residents_per_block) == 14  # every block is covered
    validation = (
        await api.client.get(f"/api/v1/schedules/{schedule['id']}/validation", headers=api.headers)
    ).json()
    assert validation == {
        "valid": True,
        "total_violations": 0,
        "violations": [],
        "coverage_rate": 1.0,
    }

    async def job_succeeded() -> bool:
        job = (await api.client.get(f"/api/v1/jobs/{job_id}", headers=api.headers)).json()
        return bool(job["status"] == "succeeded")

    await wait_until(job_succeeded, timeout=15)


async def test_an_infeasible_schedule_fails_with_the_reason(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    api = live
    await api.blocks(MONDAY, SUNDAY)
    # Three residents needed in every block, and only two exist.
    await api.rotation(name="Ward", kind="inpatient", min_residents=3, max_residents=3)
    for _ in range(2):
        await api.person("resident", pgy_level=2)
    await api.person("faculty")
    schedule = await api.schedule(MONDAY, SUNDAY)
    response = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", json={}, headers=api.headers
    )
    assert response.status_code == 202, response.text

    failed = await _finished(api, schedule["id"], wait_until)
    assert failed["job_id"] == response.json()["job_id"]
    assert failed["status"] == "failed"
    assert failed["statistics"]["status"] == "infeasible"
    assert failed["error"]
    assert failed["error"] == failed["statistics"]["explanation"]
    listed = (
        await api.client.get(f"/api/v1/schedules/{schedule['id']}/assignments", headers=api.headers)
    ).json()
    assert listed == {"items": [], "count": 0}  # never a partial schedule


async def test_regenerating_replaces_the_assignments(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    api = live
    blocks = await api.blocks(MONDAY, MONDAY + timedelta(days=1))
    rotation = await api.rotation(min_residents=1, max_residents=1)
    residents = [await api.person("resident", pgy_level=3) for _ in range(2)]
    schedule = await api.schedule(MONDAY, MONDAY + timedelta(days=1))
    manual = await api.assigned(schedule, residents[0], blocks[0], rotation)
    response = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
    )
    assert response.status_code == 202, response.text
    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["job_id"] == response.json()["job_id"]
    assert generated["status"] == "generated", generated["error"]
    listed = (
        await api.client.get(f"/api/v1/schedules/{schedule['id']}/assignments", headers=api.headers)
    ).json()
    assert listed["count"] == 4  # one resident in each of the four blocks
    assert manual["id"] not in {a["id"] for a in listed["items"]}


async def test_the_server_answers_while_the_solver_works(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    """The solver runs in a thread: requests are served (and progress shown) meanwhile."""
    api = live
    await api.blocks(MONDAY, SUNDAY)
    await api.rotation(min_residents=1, max_residents=2)
    for _ in range(3):
        await api.person("resident", pgy_level=2)
    schedule = await api.schedule(MONDAY, SUNDAY)
    await api.client.post(f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers)
    health = await api.client.get("/api/v1/people", headers=api.headers)
    assert health.status_code == 200, health.text
    assert health.json()["count"] == 3
    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["status"] == "generated", generated["error"]


async def test_a_published_schedule_counts_for_the_next_one(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    """Published assignments are facts: the next schedule's validation sees them."""
    api = live
    blocks = await api.blocks(MONDAY, MONDAY)
    rotation = await api.rotation(min_residents=1, max_residents=1)
    resident = await api.person("resident", pgy_level=2)
    first = await api.schedule(MONDAY, MONDAY, name="First")
    await api.client.post(f"/api/v1/schedules/{first['id']}/generate", headers=api.headers)
    assert (await _finished(api, first["id"], wait_until))["status"] == "generated"
    published = await api.client.post(
        f"/api/v1/schedules/{first['id']}/publish", headers=api.headers
    )
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "published"
    again = await api.client.post(f"/api/v1/schedules/{first['id']}/generate", headers=api.headers)
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "Schedule is published; it cannot be generated now"}

    second = await api.schedule(MONDAY, MONDAY, name="Overlapping draft")
    created = await api.assigned(second, resident, blocks[0], rotation)
    assert [w["rule"] for w in created["warnings"]] == ["double_booking"]


async def test_the_generation_task_runs_once(
    live: SchedulingApi, committed_db: CommittedDatabase, wait_until: WaitUntil
) -> None:
    """Task code is idempotent: run again after it finished, it finds nothing to do."""
    api = live
    await api.blocks(MONDAY, MONDAY)
    await api.rotation(min_residents=1, max_residents=1)
    await api.person("resident", pgy_level=1)
    schedule = await api.schedule(MONDAY, MONDAY)
    accepted = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
    )
    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["status"] == "generated", generated["error"]
    context = TaskContext(
        job_id=uuid.UUID(accepted.json()["job_id"]),
        attempt=2,
        run=2,
        sessionmaker=committed_db.sessionmaker,
        settings=Settings(_env_file=None, database_url=committed_db.url),
    )
    again = await generate_schedule(context, {"schedule_id": schedule["id"]})
    assert again == {"schedule_id": schedule["id"], "status": "nothing to do"}
    listed = (
        await api.client.get(f"/api/v1/schedules/{schedule['id']}/assignments", headers=api.headers)
    ).json()
    assert listed["count"] == 2


async def test_a_solver_result_that_breaks_a_rule_is_not_saved(
    live: SchedulingApi, wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule engine has the last word: a (faulty) solver's schedule with a resident on
    leave ends `failed` with the violation named, and nothing is saved."""
    api = live
    blocks = await api.blocks(MONDAY, MONDAY)
    rotation = await api.rotation(min_residents=1, max_residents=1)
    resident = await api.person("resident", pgy_level=2)
    await api.client.post(
        f"/api/v1/people/{resident['id']}/absences",
        json={"start_date": MONDAY.isoformat(), "end_date": MONDAY.isoformat()},
        headers=api.headers,
    )

    def faulty(problem: ScheduleProblem, **_: Any) -> solver.SolveResult:
        return solver.SolveResult(
            status="optimal",
            assignments=tuple(
                Assignment(
                    uuid.UUID(resident["id"]),
                    uuid.UUID(block["id"]),
                    uuid.UUID(rotation["id"]),
                    AssignmentRole.PRIMARY,
                )
                for block in blocks
            ),
            objective=0.0,
            bound=0.0,
            gap=0.0,
            wall_seconds=0.01,
            build_seconds=0.0,
            first_feasible_seconds=0.0,
        )

    monkeypatch.setattr(solver, "solve", faulty)
    schedule = await api.schedule(MONDAY, MONDAY)
    await api.client.post(f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers)
    failed = await _finished(api, schedule["id"], wait_until)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("The solver's schedule breaks 2 rule(s), so it was not saved")
    assert failed["statistics"]["validation_violations"] == 2
    listed = (
        await api.client.get(f"/api/v1/schedules/{schedule['id']}/assignments", headers=api.headers)
    ).json()
    assert listed["count"] == 0


def _solver_broken_until_repaired(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The solver raises until the returned flag is cleared (`broken[0] = False`)."""
    real_solve = solver.solve
    broken = [True]

    def until_repaired(problem: ScheduleProblem, **options: Any) -> solver.SolveResult:
        if broken[0]:
            raise RuntimeError("solver exploded")
        return real_solve(problem, **options)

    monkeypatch.setattr(solver, "solve", until_repaired)
    return broken


async def test_a_crashing_generation_ends_failed_and_retrying_its_job_generates_it(
    live: SchedulingApi, wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = live
    await api.blocks(MONDAY, MONDAY)
    broken = _solver_broken_until_repaired(monkeypatch)
    schedule = await api.schedule(MONDAY, MONDAY)
    accepted = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
    )
    failed = await _finished(api, schedule["id"], wait_until)
    assert failed["status"] == "failed"
    assert failed["error"] == "Generation stopped: RuntimeError: solver exploded"
    job_url = f"/api/v1/jobs/{accepted.json()['job_id']}"

    async def job_done() -> dict[str, Any] | None:
        job = (await api.client.get(job_url, headers=api.headers)).json()
        return job if job["status"] in {"succeeded", "dead"} else None

    job = await wait_until(job_done, timeout=30)
    # The first crash was retried; only the last attempt's failure failed the schedule.
    assert job["status"] == "dead"
    assert [a["error"] for a in job["attempt_history"]] == ["RuntimeError: solver exploded"] * 2

    broken[0] = False
    retried = await api.client.post(f"{job_url}/retry", headers=api.headers)
    assert retried.status_code == 200, retried.text
    # The retry made the schedule `generating` again in its own transaction.
    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["status"] == "generated", generated["error"]


async def test_retrying_a_superseded_generation_job_leaves_the_schedule_alone(
    live: SchedulingApi, wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = live
    await api.blocks(MONDAY, MONDAY)
    await api.rotation(name="Clinic", min_residents=1, max_residents=1)
    await api.person("resident", pgy_level=2)
    await api.person("faculty")
    broken = _solver_broken_until_repaired(monkeypatch)
    schedule = await api.schedule(MONDAY, MONDAY)
    url = f"/api/v1/schedules/{schedule['id']}"
    first_job = (await api.client.post(f"{url}/generate", headers=api.headers)).json()["job_id"]
    assert (await _finished(api, schedule["id"], wait_until))["status"] == "failed"
    job_url = f"/api/v1/jobs/{first_job}"

    async def job_dead() -> dict[str, Any] | None:
        job = (await api.client.get(job_url, headers=api.headers)).json()
        return job if job["status"] == "dead" else None

    await wait_until(job_dead, timeout=30)
    broken[0] = False
    second = await api.client.post(f"{url}/generate", headers=api.headers)
    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["status"] == "generated", generated["error"]
    assigned = (await api.client.get(f"{url}/assignments", headers=api.headers)).json()["count"]

    # The old job's failure no longer stands for the schedule: its retry changes nothing.
    retried = await api.client.post(f"{job_url}/retry", headers=api.headers)
    assert retried.status_code == 200, retried.text

    async def retry_done() -> dict[str, Any] | None:
        job = (await api.client.get(job_url, headers=api.headers)).json()
        return job if job["status"] == "succeeded" else None

    rerun = await wait_until(retry_done, timeout=30)
    assert rerun["result"] == {"schedule_id": schedule["id"], "status": "nothing to do"}
    after = (await api.client.get(url, headers=api.headers)).json()
    assert after["status"] == "generated"
    assert after["job_id"] == second.json()["job_id"]
    assert after["error"] is None
    listed = (await api.client.get(f"{url}/assignments", headers=api.headers)).json()
    assert listed["count"] == assigned > 0


async def test_a_generation_that_crashes_once_is_generated_by_its_retry(
    live: SchedulingApi, wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = live
    await api.blocks(MONDAY, MONDAY)
    real_solve = solver.solve
    calls: list[int] = []

    def crash_once(problem: ScheduleProblem, **options: Any) -> solver.SolveResult:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("worker lost its footing")
        return real_solve(problem, **options)

    monkeypatch.setattr(solver, "solve", crash_once)
    schedule = await api.schedule(MONDAY, MONDAY)
    await api.client.post(f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers)
    generated = await _finished(api, schedule["id"], wait_until)
    assert generated["status"] == "generated", generated["error"]
    assert len(calls) == 2


class SearchingSolver:
    """Stands in for `solver.solve`: searches until cancelled, as CP-SAT does (tests/unit:
    the real solver stops too)."""

    def __init__(self) -> None:
        self.started, self.stopped = threading.Event(), threading.Event()

    def __call__(
        self, problem: ScheduleProblem, *, cancellation: solver.Cancellation, **_: Any
    ) -> solver.SolveResult:
        self.started.set()
        if not cancellation.wait(timeout=60):
            raise RuntimeError("never cancelled")
        self.stopped.set()
        raise solver.SolveCancelled("The solve was cancelled")


async def test_a_cancelled_generation_job_stops_the_solver_and_fails_its_schedule(
    live: SchedulingApi, wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = live
    await api.blocks(MONDAY, MONDAY)
    searching = SearchingSolver()
    searching_started, stopped = searching.started, searching.stopped
    monkeypatch.setattr(solver, "solve", searching)
    schedule = await api.schedule(MONDAY, MONDAY)
    accepted = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
    )
    job_url = f"/api/v1/jobs/{accepted.json()['job_id']}"
    await wait_until(searching_started.is_set, timeout=30)
    await api.client.post(f"{job_url}/cancel", headers=api.headers)

    async def cancelled() -> bool:
        job = (await api.client.get(job_url, headers=api.headers)).json()
        return bool(job["status"] == "cancelled")

    await wait_until(cancelled, timeout=30)
    failed = (
        await api.client.get(f"/api/v1/schedules/{schedule['id']}", headers=api.headers)
    ).json()
    await wait_until(stopped.is_set, timeout=30)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("Generation stopped: ")
    again = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
    )
    assert again.status_code == 202, "a failed schedule can be generated again"


async def test_generations_beyond_the_solver_limit_wait_their_turn(
    live: SchedulingApi, wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TANDEM_SCHEDULE_SOLVER_CONCURRENCY (1 by default): CP-SAT is CPU-bound."""
    api = live
    await api.blocks(MONDAY, MONDAY)
    real_solve = solver.solve
    release = threading.Event()
    active: list[int] = []

    def held(problem: ScheduleProblem, **options: Any) -> solver.SolveResult:
        active.append(1)
        try:
            release.wait(timeout=30)
            return real_solve(problem, **options)
        finally:
            active.pop()

    monkeypatch.setattr(solver, "solve", held)
    first, second = [await api.schedule(MONDAY, MONDAY) for _ in range(2)]
    try:
        for schedule in (first, second):
            await api.client.post(
                f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
            )

        async def one_waits() -> list[str] | None:
            phases = [
                (await api.client.get(f"/api/v1/schedules/{s['id']}", headers=api.headers)).json()[
                    "progress"
                ]["phase"]
                for s in (first, second)
            ]
            # The solving one may not have entered the solver yet: wait for that too.
            return phases if sorted(phases) == ["solving", "waiting"] and active else None

        await wait_until(one_waits, timeout=30)
        assert len(active) == 1, "only one solve runs at a time"
    finally:
        release.set()
    for schedule in (first, second):
        generated = await _finished(api, schedule["id"], wait_until)
        assert generated["status"] == "generated", generated["error"]


async def test_a_member_cannot_stop_or_restart_a_generation_through_its_job(
    live: SchedulingApi, wait_until: WaitUntil
) -> None:
    """jobs:write is not schedule:write: a generation job is controlled like the schedule."""
    api = live
    await api.blocks(MONDAY, MONDAY)
    schedule = await api.schedule(MONDAY, MONDAY)
    accepted = await api.client.post(
        f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
    )
    await _finished(api, schedule["id"], wait_until)
    member = {"email": "m@example.com", "password": "a long enough password", "full_name": "M"}
    created = await api.client.post(
        "/api/v1/users", json=member | {"role": "member"}, headers=api.headers
    )
    assert created.status_code == 201, created.text
    login = await api.client.post(
        "/api/v1/auth/login", json={"email": member["email"], "password": member["password"]}
    )
    as_member = {"Authorization": f"Bearer {login.json()['access_token']}"}
    job_url = f"/api/v1/jobs/{accepted.json()['job_id']}"
    for action in ("cancel", "retry"):
        refused = await api.client.post(f"{job_url}/{action}", headers=as_member)
        assert refused.status_code == 403, action
        assert refused.json() == {"detail": "Missing required scope: schedule:write"}

    async def succeeded() -> bool:
        job = (await api.client.get(job_url, headers=as_member)).json()
        return bool(job["status"] == "succeeded")

    await wait_until(succeeded, timeout=30)  # neither refusal changed the job


# --- isolation between organizations (issue 12, finding 2) -------------------------------


async def _sign_up(client: Any, email: str) -> SchedulingApi:
    body = {"email": email, "password": "a long enough password", "full_name": "C"}
    token = (await client.post("/api/v1/auth/register", json=body)).json()["access_token"]
    return SchedulingApi(client, {"Authorization": f"Bearer {token}"})


def _settings(committed_db: CommittedDatabase, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": committed_db.url,
        "data_dir": tmp_path,
        "job_poll_seconds": 0.05,
        "job_retry_base_seconds": 0.05,
        "job_lease_seconds": 10,
        "rate_limit_register": "1000/minute",
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


async def _phase(api: SchedulingApi, schedule: dict[str, Any]) -> str:
    response = await api.client.get(f"/api/v1/schedules/{schedule['id']}", headers=api.headers)
    return str(response.json()["progress"]["phase"])


class HeldSolver:
    """Stands in for `solver.solve`: each solve records which blocks it was given and waits
    for `release` before solving for real."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.solving: list[frozenset[uuid.UUID]] = []
        self.real = solver.solve

    def __call__(self, problem: ScheduleProblem, **options: Any) -> solver.SolveResult:
        self.solving.append(frozenset(problem.blocks))
        if not self.release.wait(timeout=30):
            raise RuntimeError("never released")
        return self.real(problem, **options)


async def test_generations_waiting_for_the_solver_hold_no_job_slot(
    committed_db: CommittedDatabase,
    tmp_path: Path,
    wait_until: WaitUntil,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two job slots, one solver: one generation solves, two wait for the solver outside
    the slots, and another job still runs at once (it waited for the solve before)."""
    held = HeldSolver()
    monkeypatch.setattr(solver, "solve", held)
    async with running(create_app(_settings(committed_db, tmp_path, job_concurrency=2))) as client:
        api = await _sign_up(client, "chief@example.com")
        await api.blocks(MONDAY, MONDAY)
        schedules = [await api.schedule(MONDAY, MONDAY) for _ in range(3)]
        try:
            for schedule in schedules:
                accepted = await api.client.post(
                    f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
                )
                assert accepted.status_code == 202, accepted.text

            async def one_solving_two_waiting() -> bool:
                phases = sorted([await _phase(api, s) for s in schedules])
                return phases == ["solving", "waiting", "waiting"] and len(held.solving) == 1

            await wait_until(one_solving_two_waiting, timeout=30)
            echo = await api.client.post(
                "/api/v1/jobs", json={"task": "echo", "payload": {}}, headers=api.headers
            )

            async def echoed() -> bool:
                job = await api.client.get(f"/api/v1/jobs/{echo.json()['id']}", headers=api.headers)
                return bool(job.json()["status"] == "succeeded")

            await wait_until(echoed, timeout=10)
            assert len(held.solving) == 1, "the solve is still held: the echo did not wait"
        finally:
            held.release.set()
        for schedule in schedules:
            generated = await _finished(api, schedule["id"], wait_until)
            assert generated["status"] == "generated", generated["error"]


async def test_an_organization_waits_for_the_solver_behind_one_solve_of_another(
    committed_db: CommittedDatabase,
    tmp_path: Path,
    wait_until: WaitUntil,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A queues three generations, then B one: B solves second, not fourth."""
    held = HeldSolver()
    monkeypatch.setattr(solver, "solve", held)
    async with running(create_app(_settings(committed_db, tmp_path))) as client:
        a, b = await _sign_up(client, "a@example.com"), await _sign_up(client, "b@example.com")
        b_blocks = frozenset(uuid.UUID(block["id"]) for block in await b.blocks(MONDAY, MONDAY))
        await a.blocks(MONDAY, MONDAY)
        a_schedules = [await a.schedule(MONDAY, MONDAY) for _ in range(3)]
        b_schedule = await b.schedule(MONDAY, MONDAY)
        try:
            for schedule in a_schedules:
                await a.client.post(
                    f"/api/v1/schedules/{schedule['id']}/generate", headers=a.headers
                )

            async def a_queued() -> bool:
                phases = sorted([await _phase(a, s) for s in a_schedules])
                return phases == ["solving", "waiting", "waiting"]

            await wait_until(a_queued, timeout=30)
            await b.client.post(f"/api/v1/schedules/{b_schedule['id']}/generate", headers=b.headers)

            async def b_waits() -> bool:
                return await _phase(b, b_schedule) == "waiting"

            await wait_until(b_waits, timeout=10)
        finally:
            held.release.set()
        await _finished(b, b_schedule["id"], wait_until)
        for schedule in a_schedules:
            await _finished(a, schedule["id"], wait_until)
    assert [blocks == b_blocks for blocks in held.solving] == [False, True, False, False]


async def test_deleting_a_schedule_cancels_its_generation_and_stops_the_solver(
    live: SchedulingApi, wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 2: the deleted schedule's job solved to its timeout, then ended `superseded`."""
    api = live
    await api.blocks(MONDAY, MONDAY)
    searching = SearchingSolver()
    searching_started, stopped = searching.started, searching.stopped
    monkeypatch.setattr(solver, "solve", searching)
    solving, queued = [await api.schedule(MONDAY, MONDAY) for _ in range(2)]
    jobs = []
    for schedule in (solving, queued):
        accepted = await api.client.post(
            f"/api/v1/schedules/{schedule['id']}/generate", headers=api.headers
        )
        jobs.append(f"/api/v1/jobs/{accepted.json()['job_id']}")
    await wait_until(searching_started.is_set, timeout=30)
    for schedule in (queued, solving):
        deleted = await api.client.delete(
            f"/api/v1/schedules/{schedule['id']}", headers=api.headers
        )
        assert deleted.status_code == 204, deleted.text
    await wait_until(stopped.is_set, timeout=10)

    async def both_cancelled() -> list[str] | None:
        statuses = [
            (await api.client.get(url, headers=api.headers)).json()["status"] for url in jobs
        ]
        return statuses if statuses == ["cancelled", "cancelled"] else None

    await wait_until(both_cancelled, timeout=10)
