"""A pytest plugin for testing Tandem plugins the way Tandem tests itself:
`pytest -p tandem.testing` (or `pytest_plugins = ["tandem.testing"]` in a conftest).

Fixtures (tests are `pytest.mark.anyio`; the backend is asyncio):
- `tandem_settings`: settings for a temporary SQLite database in `tmp_path`, jobs fast.
- `tandem_app`: the app on that database (migrated), every plugin loaded (`load_all`: a broken
  plugin fails the test with its name).
- `tandem_client`: an httpx client speaking to the running app (lifespan started: the job
  executor and the outbox run).
- `tandem_principal`: `await tandem_principal(role="reviewer")` or
  `await tandem_principal(scopes={"jobs:read"})`: a user of one organization with a real login,
  `.headers` ready to send.
- `run_job`: `await run_job("my.task", {...})` submits a task (internal ones too), waits for
  its end and returns the job as the API shows it (`status`, `result`, `last_error`, ...).
- `agent_model`: `agent_model("my-agent", model)` answers that agent with a pydantic-ai model
  (`FunctionModel`, `TestModel`); `scripted("answer 1", "answer 2")` is a FunctionModel
  answering those texts in turn.
- `wait_until`: `await wait_until(lambda: ..., timeout=10)`.
"""

import inspect
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from fastapi import FastAPI
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tandem.agents.providers import AgentModels
from tandem.app import create_app
from tandem.db import create_engine, transaction_scope
from tandem.jobs.models import Job
from tandem.jobs.schemas import JobOut
from tandem.jobs.service import submit_job
from tandem.jobs.states import FINISHED
from tandem.migrations import upgrade_to_head
from tandem.plugins import load_all
from tandem.settings import Settings

__all__ = ["Principal", "scripted", "wait_for"]

T = TypeVar("T")
PASSWORD = "tandem-testing password"
WaitUntil = Callable[..., Awaitable[Any]]


async def wait_for(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (the deadline is the point)
    interval: float = 0.02,
) -> T:
    """Polls `condition` until it returns something truthy; fails after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while True:
            result: Any = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[no-any-return]
            await anyio.sleep(interval)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def wait_until() -> WaitUntil:
    return wait_for


@pytest.fixture
def tandem_settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tandem.db'}",
        data_dir=tmp_path,
        job_retry_base_seconds=0.01,
        job_poll_seconds=0.05,
        outbox_poll_seconds=0.05,
        rate_limit_register="10000/minute",
        rate_limit_login="10000/minute",
        rate_limit_agents="10000/minute",
    )


@pytest.fixture
async def tandem_app(tandem_settings: Settings) -> FastAPI:
    load_all()
    engine = create_engine(tandem_settings.database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    return create_app(tandem_settings)


@pytest.fixture
async def tandem_client(tandem_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with tandem_app.router.lifespan_context(tandem_app):
        transport = httpx.ASGITransport(app=tandem_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@dataclass
class Principal:
    """A signed-in user: `headers` go with every request."""

    user_id: str
    organization_id: str
    email: str
    role: str
    scopes: list[str]
    headers: dict[str, str] = field(repr=False)


async def _login(client: httpx.AsyncClient, email: str, scopes: set[str] | None) -> str:
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if scopes is not None:
        body["scopes"] = sorted(scopes)
    response = await client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def tandem_principal(tandem_client: httpx.AsyncClient) -> Callable[..., Awaitable[Principal]]:
    """Users of one organization (its owner, an admin, is made first)."""
    counter = itertools.count(1)
    owner: dict[str, str] = {}

    async def make(role: str = "admin", scopes: set[str] | None = None) -> Principal:
        if not owner:
            body = {"email": "owner@example.com", "password": PASSWORD, "full_name": "Owner"}
            registered = await tandem_client.post("/api/v1/auth/register", json=body)
            assert registered.status_code == 201, registered.text
            owner["token"] = registered.json()["access_token"]
        email = f"{role}-{next(counter)}@example.com"
        body = {"email": email, "password": PASSWORD, "full_name": email, "role": role}
        added = await tandem_client.post(
            "/api/v1/users", json=body, headers={"Authorization": f"Bearer {owner['token']}"}
        )
        assert added.status_code == 201, added.text
        headers = {"Authorization": f"Bearer {await _login(tandem_client, email, scopes)}"}
        me = (await tandem_client.get("/api/v1/users/me", headers=headers)).json()
        return Principal(
            user_id=str(added.json()["id"]),
            organization_id=str(added.json()["organization_id"]),
            email=email,
            role=role,
            scopes=list(me.get("scopes", [])),
            headers=headers,
        )

    return make


@pytest.fixture
def run_job(
    tandem_app: FastAPI, tandem_client: httpx.AsyncClient, wait_until: WaitUntil
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Submits a task (public or not) as `principal` (its organization's, its submitter),
    waits for its end, returns the job as JSON."""

    async def run(
        task: str,
        payload: dict[str, Any] | None = None,
        *,
        principal: Principal | None = None,
        max_attempts: int = 3,
        timeout: float = 20,  # noqa: ASYNC109 (how long the job may take)
    ) -> dict[str, Any]:
        sessionmaker = tandem_app.state.sessionmaker
        async with sessionmaker() as session, transaction_scope(session):
            job, _ = await submit_job(
                session,
                tandem_app.state.job_control,
                task=task,
                payload=payload or {},
                organization_id=uuid.UUID(principal.organization_id) if principal else None,
                submitted_by_id=uuid.UUID(principal.user_id) if principal else None,
                max_attempts=max_attempts,
            )
            job_id = job.id

        async def finished() -> dict[str, Any] | None:
            async with sessionmaker() as session:
                row = await session.get(Job, job_id)
                if row is None or row.status not in FINISHED:
                    return None
                return JobOut.model_validate(row).model_dump(mode="json")

        result: dict[str, Any] = await wait_until(finished, timeout=timeout)
        return result

    return run


def scripted(*texts: str, model_name: str = "scripted") -> FunctionModel:
    """A model answering `texts` in turn (the last one again once they run out)."""
    answers = list(texts)
    calls = itertools.count()

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(answers[min(next(calls), len(answers) - 1)])])

    return FunctionModel(reply, model_name=model_name)


@pytest.fixture
def agent_model(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Model], None]:
    """`agent_model(agent_id, model)`: that agent runs on `model` for the rest of the test."""
    chosen: dict[str, Model] = {}
    original = AgentModels.for_agent

    def for_agent(self: AgentModels, agent_id: str) -> Model:
        return chosen[agent_id] if agent_id in chosen else original(self, agent_id)

    monkeypatch.setattr(AgentModels, "for_agent", for_agent)

    def use(agent_id: str, model: Model) -> None:
        chosen[agent_id] = model

    return use
