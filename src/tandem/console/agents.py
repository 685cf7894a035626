"""The agents page: run an agent (in the background, as the API's `background: true`), read
its output when it is done, and the organization's recent runs."""

import uuid
from typing import Any

from fastapi import Request, Response
from pydantic import ValidationError

from tandem.agents import runs
from tandem.agents.models import AgentRun
from tandem.agents.registry import registry
from tandem.agents.schemas import RunIn
from tandem.console.auth import CheckedForm, CurrentUser, require
from tandem.console.web import ConsoleRoute, redirect, render
from tandem.db import SessionDep
from tandem.errors import Invalid, NotFound
from tandem.identity.scopes import Scope
from tandem.jobs.deps import JobControlDep
from tandem.pagination import PageParams
from tandem.ratelimit import RateLimiter
from tandem.routing import Router
from tandem.settings import Settings

router = Router(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

RECENT_RUNS = 20


def _takes_labels(agent_id: str) -> bool:
    return "labels" in registry.get(agent_id).parameters.model_fields


@router.get("/agents")
async def agents_page(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    require(user, Scope.agent_read)
    shown: AgentRun | None = None
    if wanted := request.query_params.get("run"):
        try:
            shown = await runs.get_run(session, user.principal, uuid.UUID(wanted))
        except ValueError:
            raise NotFound(f"Run {wanted} not found") from None
    recent, total = await runs.list_runs(session, user.principal, PageParams(limit=RECENT_RUNS))
    agents = registry.list()
    chosen = shown.agent_id if shown else request.query_params.get("agent", agents[0].agent_id)
    live = shown is not None and shown.status not in runs.FINISHED
    return render(
        request,
        "agents.html",
        {
            "user": user,
            "agents": agents,
            "chosen": chosen,
            "label_agents": [a.agent_id for a in agents if _takes_labels(a.agent_id)],
            "shown": shown,
            "recent": recent,
            "total": total,
            "live": live,
            "live_version": f"{shown.id}:{shown.status.value}" if shown else "none",
        },
    )


@router.post("/agents/run")
async def run_agent(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    control: JobControlDep,
    form: CheckedForm,
) -> Response:
    require(user, Scope.agent_run)
    settings: Settings = request.app.state.settings
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.hit(settings.rate_limit_agents, "agents", f"user:{user.principal.id}")
    agent_id = str(form.get("agent_id", ""))
    parameters: dict[str, Any] = {}
    labels = [part.strip() for part in str(form.get("labels", "")).split(",") if part.strip()]
    if labels and _takes_labels(agent_id):
        parameters["labels"] = labels
    try:
        request_in = RunIn(
            agent_id=agent_id,
            input_text=str(form.get("input_text", "")),
            parameters=parameters,
            background=True,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise Invalid(f"{error['loc'][-1]}: {error['msg']}") from None
    run = await runs.submit_run(
        session, control, user.principal, request_in, max_input_chars=settings.agent_max_input_chars
    )
    return redirect(f"/ui/agents?run={run.id}")
