"""HTTP for agents: list, describe, run (waiting or in the background), read runs."""

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from tandem.agents import runs, streaming
from tandem.agents.models import RunStatus
from tandem.agents.providers import AgentModels
from tandem.agents.registry import registry
from tandem.agents.schemas import AgentOut, RunAcceptedOut, RunIn, RunOut
from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.pagination import Page, PageParamsDep
from tandem.ratelimit import Per, PrincipalLimit, limit_principal
from tandem.routing import Router
from tandem.settings import Settings

# Every /api/v1/agents route: per user (API keys count against their creator), so that new
# keys add no budget, and per organization, so that new users add none beyond it.
limit_agents = limit_principal(
    PrincipalLimit("agents", lambda s: s.rate_limit_agents),
    PrincipalLimit("agents", lambda s: s.rate_limit_agents_organization, Per.organization),
)

router = Router(
    route_class=ApiRoute,
    prefix="/api/v1/agents",
    tags=["agents"],
    dependencies=[Depends(limit_agents)],
    responses=error_responses(401, 403, 429),
)

AgentReader = Annotated[Principal, Depends(require_scopes(Scope.agent_read))]
AgentRunner = Annotated[Principal, Depends(require_scopes(Scope.agent_run))]


def _agent_out(agent_id: str) -> AgentOut:
    spec = registry.get(agent_id)
    return AgentOut(agent_id=spec.agent_id, name=spec.name, description=spec.description)


@router.get("")
async def list_agents(principal: AgentReader) -> Page[AgentOut]:
    items = [_agent_out(spec.agent_id) for spec in registry.list()]
    return Page(items=items, count=len(items))


@router.post(
    "/run",
    response_model=RunOut | RunAcceptedOut,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "The run; with `stream: true`, server-sent events `start`, `delta` "
            "(`{text}`), `restart`, and last `run` (the run)",
        },
        202: {"model": RunAcceptedOut, "description": "Going on as a job"},
        **error_responses(404),
    },
)
async def run(
    body: RunIn,
    request: Request,
    response: Response,
    principal: AgentRunner,
    session: SessionDep,
    jobs: JobControlDep,
) -> RunOut | RunAcceptedOut | streaming.EventStreamResponse:
    settings: Settings = request.app.state.settings
    if body.stream:
        started = await streaming.start_streamed_run(
            session,
            jobs,
            principal,
            body,
            max_input_chars=settings.agent_max_input_chars,
            timeout_seconds=settings.agent_stream_timeout_seconds,
        )
        models: AgentModels = request.app.state.agent_models
        events = streaming.stream_run(
            request.app.state.sessionmaker,
            models.for_agent(started.agent_id),
            started,
            timeout_seconds=settings.agent_stream_timeout_seconds,
        )
        return streaming.EventStreamResponse(events)
    agent_run, finished = await runs.run_or_defer(
        session,
        request.app.state.sessionmaker,
        jobs,
        principal,
        body,
        max_input_chars=settings.agent_max_input_chars,
        wait_seconds=None if body.background else settings.agent_sync_timeout_seconds,
    )
    if finished:
        return RunOut.of(agent_run)
    response.status_code = status.HTTP_202_ACCEPTED
    return RunAcceptedOut(
        run_id=agent_run.id,
        agent_id=agent_run.agent_id,
        status=agent_run.status,
        job_id=agent_run.job_id,
    )


@router.get("/runs")
async def list_runs(
    principal: AgentReader,
    session: SessionDep,
    page: PageParamsDep,
    status_filter: Annotated[RunStatus | None, Query(alias="status")] = None,
    agent_id: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[RunOut]:
    items, count = await runs.list_runs(
        session, principal, page, status=status_filter, agent_id=agent_id
    )
    return Page(items=[RunOut.of(r) for r in items], count=count)


@router.get("/runs/{run_id}", responses=error_responses(404))
async def get_run(run_id: uuid.UUID, principal: AgentReader, session: SessionDep) -> RunOut:
    return RunOut.of(await runs.get_run(session, principal, run_id))


@router.get("/{agent_id}", responses=error_responses(404))
async def get_agent(agent_id: str, principal: AgentReader) -> AgentOut:
    return _agent_out(agent_id)
