"""Streamed agent runs (`stream: true`): the model's output as server-sent events while it is
written, then the run; stored as any run. Against a real OpenAI-compatible server that
streams (tests/openai_server.py) and the offline model, with Tandem itself served by uvicorn
so that events really arrive one by one."""

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tandem.agents.schemas import RunIn
from tandem.agents.streaming import DISCONNECTED, start_streamed_run
from tandem.app import create_app
from tandem.db import utcnow
from tandem.identity.principal import principal_of_user
from tandem.jobs.models import Job
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.live_server import serving
from tests.openai_server import MODEL, openai_server

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
PIECES = ["The council ", "approved ", "a budget ", "for transport."]


@dataclass
class Event:
    name: str
    data: dict[str, Any]


@dataclass
class Tandem:
    client: httpx.AsyncClient
    headers: dict[str, str]

    @asynccontextmanager
    async def stream(self, **body: Any) -> AsyncIterator[AsyncIterator[Event]]:
        """POSTs a streamed run and yields its events as they arrive."""
        request = {"agent_id": "summarizer", "input_text": ARTICLE, "stream": True} | body
        async with self.client.stream(
            "POST", "/api/v1/agents/run", json=request, headers=self.headers
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            yield events_of(response)

    async def run(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/agents/runs/{run_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def events_of(response: httpx.Response) -> AsyncIterator[Event]:
    """Server-sent events (`event:` and one `data:` line each, as Tandem writes them)."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data = line.removeprefix("data:").strip()
        elif line == "" and data:
            yield Event(name, json.loads(data))
            name, data = "message", ""


@asynccontextmanager
async def tandem_at(
    db: CommittedDatabase, tmp_path: Path, **overrides: Any
) -> AsyncIterator[Tandem]:
    values: dict[str, Any] = {
        "database_url": db.url,
        "data_dir": tmp_path,
        "job_poll_seconds": 0.05,
        "rate_limit_register": "1000/minute",
    }
    settings = Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        body = {"email": "streamer@example.com", "password": PASSWORD, "full_name": "S"}
        registered = await client.post("/api/v1/auth/register", json=body)
        token = registered.json()["access_token"]
        yield Tandem(client, {"Authorization": f"Bearer {token}"})


async def test_pieces_arrive_as_events_while_the_model_writes_then_the_stored_run(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    async with openai_server(PIECES, hold_after=1) as llm:
        llm_settings = {"llm_base_url": llm.base_url, "llm_model": "gpt-test", "llm_api_key": "k"}
        async with (
            tandem_at(committed_db, tmp_path, **llm_settings) as tandem,
            tandem.stream() as events,
        ):
            start = await anext(events)
            assert start.name == "start"
            assert start.data["status"] == "running"
            first = await anext(events)
            # The model server still holds back the rest: this event came while it wrote.
            assert not llm.release.is_set()
            assert first == Event("delta", {"text": PIECES[0]})
            llm.release.set()
            rest = [event async for event in events]
    assert [event.name for event in rest] == ["delta"] * (len(PIECES) - 1) + ["run"]
    assert "".join(event.data["text"] for event in [first, *rest[:-1]]) == "".join(PIECES)
    run = rest[-1].data
    assert run["run_id"] == start.data["run_id"]
    assert run["status"] == "completed"
    assert run["output"] == "".join(PIECES)
    assert run["model"] == MODEL
    assert run["usage"] == {"input_tokens": 57, "output_tokens": 7, "requests": 1}
    assert llm.requests[0]["stream"] is True
    assert llm.streams_finished == 1


async def test_the_streamed_run_is_stored_like_any_run(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    async with openai_server(PIECES) as llm:
        llm_settings = {"llm_base_url": llm.base_url, "llm_model": "gpt-test", "llm_api_key": "k"}
        async with tandem_at(committed_db, tmp_path, **llm_settings) as tandem:
            async with tandem.stream() as events:
                streamed = [event async for event in events]
            stored = await tandem.run(streamed[0].data["run_id"])
            listed = await tandem.client.get(
                "/api/v1/agents/runs?status=completed", headers=tandem.headers
            )
            job = await tandem.client.get(
                f"/api/v1/jobs/{stored['job_id']}", headers=tandem.headers
            )
    assert stored == streamed[-1].data
    # The run's job is only the backstop for a server dying mid-stream: due after the
    # stream's deadline (300 s by default), when it finds the run finished.
    backstop = datetime.fromisoformat(job.json()["next_run_at"])
    assert job.json()["status"] == "pending"
    assert backstop > datetime.fromisoformat(stored["finished_at"]) + timedelta(seconds=300)
    assert stored["finished_at"] is not None
    assert [item["run_id"] for item in listed.json()["items"]] == [stored["run_id"]]


async def test_a_client_that_hangs_up_stops_the_model_and_leaves_the_run_failed(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    async with openai_server(PIECES, hold_after=1) as llm:
        llm_settings = {"llm_base_url": llm.base_url, "llm_model": "gpt-test", "llm_api_key": "k"}
        async with tandem_at(committed_db, tmp_path, **llm_settings) as tandem:
            async with tandem.stream() as events:
                run_id = (await anext(events)).data["run_id"]
                assert (await anext(events)).name == "delta"
            # The response is closed while the model is still writing.

            async def ended() -> dict[str, Any] | None:
                run = await tandem.run(run_id)
                return run if run["status"] != "running" else None

            run = await wait_until(ended, timeout=10)
            assert run["status"] == "failed"
            assert run["error"] == DISCONNECTED
            assert run["finished_at"] is not None
    assert (llm.streams_abandoned, llm.streams_finished) == (1, 0), "the model was stopped"


async def test_the_offline_model_streams_its_output_in_chunks(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    async with tandem_at(committed_db, tmp_path) as tandem:
        async with tandem.stream() as events:
            streamed = [event async for event in events]
        stored = await tandem.run(streamed[0].data["run_id"])
    deltas = [event.data["text"] for event in streamed if event.name == "delta"]
    assert len(deltas) > 2, "a summary of several sentences comes in several chunks"
    assert streamed[-1].name == "run"
    run = streamed[-1].data
    assert run["status"] == "completed"
    assert run["model"] == "tandem-offline"
    assert "".join(deltas) == run["output"] == stored["output"]
    assert run["usage"]["output_tokens"] > 0


async def test_a_structured_output_streams_as_its_json(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    async with tandem_at(committed_db, tmp_path) as tandem:
        labels = {"labels": ["billing", "technical"]}
        text = "I was charged twice on my invoice; please refund the payment."
        async with tandem.stream(
            agent_id="classifier", input_text=text, parameters=labels
        ) as events:
            streamed = [event async for event in events]
    deltas = [event.data["text"] for event in streamed if event.name == "delta"]
    assert len(deltas) > 1
    streamed_output = json.loads("".join(deltas))
    run = streamed[-1].data
    assert streamed_output["label"] == json.loads(run["output"])["label"] == "billing"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        pytest.param({"background": True}, 422, "stream and background", id="with-background"),
        pytest.param({"input_text": "x" * 50_001}, 422, "the limit is", id="input-too-long"),
        pytest.param({"agent_id": "nope"}, 404, "Agent 'nope' not found", id="unknown-agent"),
    ],
)
async def test_a_refused_streamed_run_is_a_json_error_and_records_nothing(
    committed_db: CommittedDatabase,
    tmp_path: Path,
    body: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    async with tandem_at(committed_db, tmp_path) as tandem:
        request = {"agent_id": "summarizer", "input_text": ARTICLE, "stream": True} | body
        response = await tandem.client.post(
            "/api/v1/agents/run", json=request, headers=tandem.headers
        )
        runs = await tandem.client.get("/api/v1/agents/runs", headers=tandem.headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert detail in json.dumps(response.json()["detail"])
    assert runs.json()["count"] == 0


async def test_a_streamed_run_needs_agent_run_and_counts_against_the_rate_limit(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    async with tandem_at(committed_db, tmp_path, rate_limit_agents="2/minute") as tandem:
        login = {"email": "streamer@example.com", "password": PASSWORD, "scopes": ["agent:read"]}
        narrow = (await tandem.client.post("/api/v1/auth/login", json=login)).json()
        request = {"agent_id": "summarizer", "input_text": ARTICLE, "stream": True}
        refused = await tandem.client.post(
            "/api/v1/agents/run",
            json=request,
            headers={"Authorization": f"Bearer {narrow['access_token']}"},
        )
        async with tandem.stream() as events:
            assert [event.name async for event in events][-1] == "run"
        limited = await tandem.client.post(
            "/api/v1/agents/run", json=request, headers=tandem.headers
        )
    assert refused.status_code == 403, refused.text
    assert "agent:run" in refused.json()["detail"]
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["Retry-After"]) >= 1


async def test_a_run_whose_server_died_mid_stream_is_finished_by_its_job(
    committed_db: CommittedDatabase, tmp_path: Path, wait_until: WaitUntil
) -> None:
    """The stream's request recorded the run and its backstop job, then the server died (no
    stream ever ran here). Once the backstop is due, the job runs the run as any job would."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=committed_db.url,
        data_dir=tmp_path,
        job_poll_seconds=0.05,
        rate_limit_register="1000/minute",
    )
    app = create_app(settings)
    async with running(app) as client:
        body = {"email": "crash@example.com", "password": PASSWORD, "full_name": "C"}
        token = (await client.post("/api/v1/auth/register", json=body)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        user_id = uuid.UUID((await client.get("/api/v1/users/me", headers=headers)).json()["id"])
        sessionmaker = app.state.sessionmaker
        async with sessionmaker() as session:
            principal = await principal_of_user(session, user_id)
            assert principal is not None
            request = RunIn(agent_id="summarizer", input_text=ARTICLE, stream=True)
            run = await start_streamed_run(
                session,
                app.state.job_control,
                principal,
                request,
                max_input_chars=settings.agent_max_input_chars,
                timeout_seconds=settings.agent_stream_timeout_seconds,
            )
        stuck = await client.get(f"/api/v1/agents/runs/{run.id}", headers=headers)
        assert stuck.json()["status"] == "running"
        # Time passes: the backstop becomes due.
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(Job).where(Job.id == run.job_id).values(next_run_at=utcnow())
            )

        async def finished() -> dict[str, Any] | None:
            response = await client.get(f"/api/v1/agents/runs/{run.id}", headers=headers)
            return response.json() if response.json()["status"] == "completed" else None

        finished_run = await wait_until(finished, timeout=20)
    assert finished_run["output"]
    assert finished_run["model"] == "tandem-offline"


async def test_an_answer_the_agent_sends_back_is_followed_by_restart_and_the_new_one(
    committed_db: CommittedDatabase, tmp_path: Path
) -> None:
    """The summarizer refuses a summary over its word budget and asks the model again."""
    shorter = ["Council ", "backs transport."]
    async with openai_server(PIECES, retry_pieces=shorter) as llm:
        llm_settings = {"llm_base_url": llm.base_url, "llm_model": "gpt-test", "llm_api_key": "k"}
        async with (
            tandem_at(committed_db, tmp_path, **llm_settings) as tandem,
            tandem.stream(parameters={"max_words": 3}) as events,
        ):
            streamed = [event async for event in events]
    names = [event.name for event in streamed]
    assert names == ["start", *["delta"] * len(PIECES), "restart", *["delta"] * 2, "run"]
    after_restart = streamed[names.index("restart") + 1 : -1]
    assert "".join(event.data["text"] for event in after_restart) == "".join(shorter)
    run = streamed[-1].data
    assert run["output"] == "Council backs transport."
    assert run["usage"]["requests"] == 2
    assert len(llm.requests) == 2
