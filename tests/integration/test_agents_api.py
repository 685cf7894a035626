"""The agents API (API.md "Agents"): runs go through real jobs on a database with real commits."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import select

from tandem.agents.models import AgentRun
from tandem.app import create_app
from tandem.jobs import lifecycle
from tandem.jobs.dispatch import InProcessDispatch
from tandem.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, LoginAs, running
from tests.factories import make_user

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]
PASSWORD = "a long enough password"
ARTICLE = (
    "The city council approved a new budget on Tuesday. "
    "The budget raises spending on public transport by ten percent. "
    "Critics said the plan ignores rising housing costs. "
    "The mayor promised a separate housing plan next spring. "
    "Bus fares will stay the same for another year."
)


def settings_for(db: CommittedDatabase, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db.url,
        "data_dir": tmp_path,
        "job_poll_seconds": 0.05,
        "rate_limit_register": "1000/minute",
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@asynccontextmanager
async def signed_in(
    settings: Settings, app: FastAPI | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with running(app or create_app(settings)) as client:
        body = {"email": "agent-user@example.com", "password": PASSWORD, "full_name": "A"}
        token = (await client.post("/api/v1/auth/register", json=body)).json()["access_token"]
        yield client, {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def live(
    committed_db: CommittedDatabase, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with signed_in(settings_for(committed_db, tmp_path)) as pair:
        yield pair


async def test_agents_are_listed_and_described(
    client: httpx.AsyncClient, login_as: LoginAs, member: Any
) -> None:
    headers = await login_as(member)
    listed = (await client.get("/api/v1/agents", headers=headers)).json()
    assert {a["agent_id"] for a in listed["items"]} == {
        "summarizer",
        "classifier",
        "content-writer",
    }
    assert listed["count"] == 3
    one = await client.get("/api/v1/agents/summarizer", headers=headers)
    assert set(one.json()) == {"agent_id", "name", "description"}
    missing = await client.get("/api/v1/agents/nope", headers=headers)
    assert missing.status_code == 404, missing.text
    assert missing.json() == {"detail": "Agent 'nope' not found"}


async def test_a_sync_run_answers_with_the_output(
    live: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = live
    response = await client.post(
        "/api/v1/agents/run",
        json={"agent_id": "summarizer", "input_text": ARTICLE, "parameters": {"max_words": 30}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "completed"
    assert run["output"]
    assert len(run["output"]) < len(ARTICLE)
    assert all(sentence.strip() in ARTICLE for sentence in run["output"].split(". ") if sentence)
    usage = run["usage"]
    assert run["token_usage"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert usage["requests"] >= 1
    assert run["model"] == "tandem-offline"
    assert run["finished_at"] is not None
    stored = await client.get(f"/api/v1/agents/runs/{run['run_id']}", headers=headers)
    # The answer is handed over in-process by the run's finish, not read back: it must be
    # exactly what was stored.
    assert stored.json() == run


async def test_the_classifier_returns_a_label_and_scores(
    live: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = live
    response = await client.post(
        "/api/v1/agents/run",
        json={
            "agent_id": "classifier",
            "input_text": "I was charged twice on my last invoice and want a refund.",
            "parameters": {"labels": ["billing", "technical", "shipping"]},
        },
        headers=headers,
    )
    output = json.loads(response.json()["output"])
    assert output["label"] == "billing"
    assert set(output["scores"]) == {"billing", "technical", "shipping"}


async def test_a_background_run_is_202_and_finishes_as_a_job(
    live: tuple[httpx.AsyncClient, dict[str, str]], wait_until: WaitUntil
) -> None:
    client, headers = live
    response = await client.post(
        "/api/v1/agents/run",
        json={"agent_id": "summarizer", "input_text": ARTICLE, "background": True},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"run_id", "agent_id", "status", "job_id"}
    assert accepted["status"] in {"queued", "running"}

    async def completed() -> dict[str, Any] | None:
        run = (
            await client.get(f"/api/v1/agents/runs/{accepted['run_id']}", headers=headers)
        ).json()
        return run if run["status"] == "completed" else None

    run = await wait_until(completed, timeout=15)
    assert run["job_id"] == accepted["job_id"]

    async def job_succeeded() -> bool:
        job = await client.get(f"/api/v1/jobs/{accepted['job_id']}", headers=headers)
        return bool(job.json()["status"] == "succeeded")

    await wait_until(job_succeeded, timeout=15)


async def test_a_sync_run_past_the_wait_hands_over_to_its_job(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """No executor in the serving process: the wait runs out, 202, and a worker finishes it."""
    api_only = settings_for(
        committed_db, tmp_path, worker_enabled=False, agent_sync_timeout_seconds=0.2
    )
    async with signed_in(api_only) as (client, headers):
        response = await client.post(
            "/api/v1/agents/run",
            json={"agent_id": "summarizer", "input_text": ARTICLE},
            headers=headers,
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "queued"
        async with running(create_app(settings_for(committed_db, tmp_path / "worker"))):

            async def completed() -> bool:
                run = await client.get(f"/api/v1/agents/runs/{accepted['run_id']}", headers=headers)
                return bool(run.json()["status"] == "completed")

            await wait_until(completed, timeout=15)


async def test_a_run_whose_job_gives_up_ends_failed_with_the_jobs_error(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    """Its job died without the task recording anything (every attempt crashed, or its last
    lease expired), or was cancelled before it ran: the run does not stay queued or running."""
    api_only = settings_for(committed_db, tmp_path, worker_enabled=False)
    async with signed_in(api_only) as (client, headers):
        runs = []
        for _ in range(2):
            response = await client.post(
                "/api/v1/agents/run",
                json={"agent_id": "summarizer", "input_text": ARTICLE, "background": True},
                headers=headers,
            )
            assert response.status_code == 202, response.text
            runs.append(response.json())
        dying, cancelled = runs
        cancel = await client.post(f"/api/v1/jobs/{cancelled['job_id']}/cancel", headers=headers)
        assert cancel.json()["status"] == "cancelled"
        for _ in range(2):  # the run job's budget: every attempt crashes
            (claim,) = await lifecycle.claim_due(committed_db.sessionmaker, "test", 1, lease=30)
            assert str(claim.job_id) == dying["job_id"]
            await lifecycle.record_failure(
                committed_db.sessionmaker,
                claim,
                "RuntimeError: worker crashed",
                0.0,
                InProcessDispatch(),
            )

        async def run_of(accepted: dict[str, Any]) -> dict[str, Any]:
            url = f"/api/v1/agents/runs/{accepted['run_id']}"
            return dict((await client.get(url, headers=headers)).json())

        died = await run_of(dying)
        assert (died["status"], died["error"]) == ("failed", "RuntimeError: worker crashed")
        assert died["finished_at"] is not None
        stopped = await run_of(cancelled)
        assert (stopped["status"], stopped["error"]) == ("failed", "The job was cancelled")
        # Retrying the dead job from the dead-letter queue queues its run again.
        retried = await client.post(f"/api/v1/jobs/{dying['job_id']}/retry", headers=headers)
        assert retried.status_code == 200, retried.text
        again = await run_of(dying)
        assert (again["status"], again["error"], again["finished_at"]) == ("queued", None, None)


async def test_a_failing_model_marks_the_run_failed_never_a_500(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    settings = settings_for(
        committed_db,
        tmp_path,
        llm_base_url="http://llm.test/v1",
        llm_api_key="test-key",
        llm_model="test-model",
        llm_max_retries=2,
    )
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        endpoint = mock.post("http://llm.test/v1/chat/completions").mock(
            return_value=httpx.Response(500, json={"error": {"message": "upstream exploded"}})
        )
        async with signed_in(settings) as (client, headers):
            response = await client.post(
                "/api/v1/agents/run",
                json={"agent_id": "summarizer", "input_text": ARTICLE},
                headers=headers,
            )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "failed"
    assert "500" in run["error"]
    assert "Traceback" not in run["error"]
    assert endpoint.call_count == 3, "the first call and two retries"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"agent_id": "", "input_text": "x"}, ["body", "agent_id"], id="empty-agent"),
        pytest.param(
            {"agent_id": "summarizer", "input_text": ""}, ["body", "input_text"], id="empty-input"
        ),
        pytest.param(
            {"agent_id": "summarizer", "input_text": " \n\t "},
            ["body", "input_text"],
            id="blank-input",
        ),
        pytest.param(
            {"agent_id": "summarizer", "input_text": "x" * 50_001},
            ["body", "input_text"],
            id="too-long",
        ),
        pytest.param(
            {"agent_id": "classifier", "input_text": "x", "parameters": {"labels": []}},
            ["body", "parameters", "labels"],
            id="no-labels",
        ),
    ],
)
async def test_bad_runs_are_422(
    client: httpx.AsyncClient, login_as: LoginAs, member: Any, body: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post("/api/v1/agents/run", json=body, headers=await login_as(member))
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == loc
    assert error["msg"], "a message a person can act on"


async def test_running_an_unknown_agent_is_404(
    client: httpx.AsyncClient, login_as: LoginAs, member: Any
) -> None:
    response = await client.post(
        "/api/v1/agents/run",
        json={"agent_id": "nope", "input_text": "x"},
        headers=await login_as(member),
    )
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Agent 'nope' not found"}


async def test_no_credentials_is_401_and_no_agent_run_scope_is_403(
    client: httpx.AsyncClient, login_as: LoginAs, member: Any
) -> None:
    body = {"agent_id": "summarizer", "input_text": "x"}
    anonymous = await client.post("/api/v1/agents/run", json=body)
    assert anonymous.status_code == 401, anonymous.text
    assert "Authorization" in anonymous.json()["detail"]
    read_only = await client.post(
        "/api/v1/agents/run", json=body, headers=await login_as(member, {"agent:read"})
    )
    assert read_only.status_code == 403, read_only.text
    assert read_only.json() == {"detail": "Missing required scope: agent:run"}


async def test_the_61st_request_in_a_minute_is_429(
    client: httpx.AsyncClient, login_as: LoginAs, member: Any
) -> None:
    headers = await login_as(member)
    for n in range(60):
        response = await client.get("/api/v1/agents", headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-remaining"] == str(59 - n)
    limited = await client.get("/api/v1/agents", headers=headers)
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert "Retry in" in limited.json()["detail"]
    other = await client.get("/api/v1/agents", headers=await login_as(await make_user()))
    assert other.status_code == 200, "the budget is per principal"


async def test_runs_are_listed_by_status_and_agent_and_private_to_the_organization(
    live: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = live
    for agent_id in ("summarizer", "summarizer"):
        await client.post(
            "/api/v1/agents/run",
            json={"agent_id": agent_id, "input_text": ARTICLE},
            headers=headers,
        )
    listed = (
        await client.get(
            "/api/v1/agents/runs?status=completed&agent_id=summarizer", headers=headers
        )
    ).json()
    assert listed["count"] == 2
    assert (await client.get("/api/v1/agents/runs?agent_id=classifier", headers=headers)).json()[
        "count"
    ] == 0
    body = {"email": "stranger@example.com", "password": PASSWORD, "full_name": "S"}
    token = (await client.post("/api/v1/auth/register", json=body)).json()["access_token"]
    stranger = {"Authorization": f"Bearer {token}"}
    run_id = listed["items"][0]["run_id"]
    hidden = await client.get(f"/api/v1/agents/runs/{run_id}", headers=stranger)
    assert hidden.status_code == 404, hidden.text
    assert hidden.json() == {"detail": f"Run {run_id} not found"}


async def test_a_sync_run_with_a_free_slot_is_inserted_claimed_and_runs_in_this_process(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    """Issue 14: the request's own transaction inserts the job already claimed by this
    process's executor (running, leased, its attempt recorded), which runs it at once."""
    settings = settings_for(committed_db, tmp_path)
    app = create_app(settings)
    async with signed_in(settings, app) as (client, headers):
        executor = app.state.executor
        response = await client.post(
            "/api/v1/agents/run",
            json={"agent_id": "summarizer", "input_text": ARTICLE},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        run = response.json()
        assert run["status"] == "completed"
        async with committed_db.sessionmaker() as session:
            job = await session.get_one(Job, uuid.UUID(run["job_id"]))
            attempts = (
                await session.scalars(select(JobAttempt).where(JobAttempt.job_id == job.id))
            ).all()
            stored = await session.get_one(AgentRun, uuid.UUID(run["run_id"]))
    assert job.status is JobStatus.succeeded
    assert (job.attempts, job.runs) == (1, 1)
    # Never pending: started the instant it was due, by the request's transaction.
    assert job.started_at == job.next_run_at == stored.started_at
    assert [(a.number, a.worker, a.outcome) for a in attempts] == [
        (1, executor.runner.worker, AttemptOutcome.succeeded)
    ]
    assert executor.free_slots == executor.concurrency


async def test_a_sync_run_without_a_free_slot_is_claimed_as_usual(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    settings = settings_for(committed_db, tmp_path, job_concurrency=1)
    app = create_app(settings)
    async with signed_in(settings, app) as (client, headers):
        executor = app.state.executor
        held = executor.hold_slot(None)  # the only slot
        assert held is not None
        assert executor.hold_slot(None) is None
        posted = asyncio.create_task(
            client.post(
                "/api/v1/agents/run",
                json={"agent_id": "summarizer", "input_text": ARTICLE},
                headers=headers,
            )
        )
        await asyncio.sleep(0.3)
        assert not posted.done(), "the run waits for a slot"
        held.release()
        response = await posted
        assert response.status_code == 200, response.text
        async with committed_db.sessionmaker() as session:
            job = await session.get_one(Job, uuid.UUID(response.json()["job_id"]))
    assert job.status is JobStatus.succeeded
    assert job.started_at is not None
    assert job.started_at > job.next_run_at  # claimed after it was due, not at submit
