"""Agent runs: every run is a row and a job. A synchronous request waits for the job, up to
TANDEM_AGENT_SYNC_TIMEOUT_SECONDS, and otherwise answers 202 while the job goes on."""

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from tandem.agents.models import AgentRun, RunStatus
from tandem.agents.providers import AgentModels
from tandem.agents.registry import registry
from tandem.agents.runner import run_agent
from tandem.agents.schemas import RunIn
from tandem.agents.spec import AgentFailed
from tandem.db import READ_ONLY, call_after_commit, insert_row, new_id, utcnow
from tandem.errors import Invalid
from tandem.identity.principal import Principal
from tandem.identity.projects import get_project
from tandem.identity.scopes import Scope
from tandem.jobs.executor import HeldSlot
from tandem.jobs.registry import TaskContext, task
from tandem.jobs.service import JobControl, submit_job
from tandem.pagination import PageParams, paginate
from tandem.tenancy import owned

RUN_TASK = "agent.run"
FINISHED = frozenset({RunStatus.completed, RunStatus.failed})
# A run finished by this process hands its waiter what it wrote, with no read of the row; one
# finished by another process (`tandem worker`, another `serve --workers` process) is seen by
# polling the row this often.
WAIT_POLL_SECONDS = 0.25
_finished_here: dict[uuid.UUID, asyncio.Future[dict[str, Any]]] = {}


@dataclass(frozen=True)
class StartedRun:
    """A run inserted already started, with its job claimed by this process: what its task
    would otherwise read back when it starts it (`TaskContext.handed`)."""

    agent_id: str
    input_text: str
    parameters: dict[str, Any]
    started_at: datetime


async def submit_run(
    session: AsyncSession,
    jobs: JobControl,
    principal: Principal,
    request: RunIn,
    *,
    max_input_chars: int,
    job_run_at: datetime | None = None,
    held: HeldSlot | None = None,
    streamed: bool = False,
) -> AgentRun:
    """Records the run and submits its job (due at `job_run_at`, default now), in the
    caller's transaction. With `held` (a slot of this process's executor) the job is
    inserted claimed for it and the run started (`held.claim` set): the caller starts the
    job there once the transaction has committed. `streamed`: the run is recorded running
    from now (the request runs it; its job is a backstop).

    The run returned is a record of the row written (`db.insert_row`), not an object of the
    session: change the row with an UPDATE."""
    agent_id, input_text, parameters = request.agent_id, request.input_text, request.parameters
    project_id = request.project_id
    spec = registry.get(agent_id)  # 404 for an unknown agent
    if len(input_text) > max_input_chars:
        raise Invalid(
            f"input_text is {len(input_text)} characters; the limit is {max_input_chars}",
            loc=("body", "input_text"),
        )
    spec.validate_parameters(parameters)  # 422 naming the parameter
    if project_id is not None:
        await get_project(session, principal, project_id)
    now = utcnow()
    run = AgentRun(
        id=new_id(),
        organization_id=principal.organization_id,
        user_id=principal.user_id,
        principal_kind=principal.kind.value,
        principal_id=principal.id,
        project_id=project_id,
        agent_id=agent_id,
        status=RunStatus.queued,
        input_text=input_text,
        parameters=parameters,
        input_tokens=0,
        output_tokens=0,
        requests=0,
        job_id=None,
        output=None,
        error=None,
        model=None,
        started_at=None,
        finished_at=None,
        created_at=now,
        updated_at=now,
    )
    # The job first, so that the run's row is inserted once, with its job.
    job, _ = await submit_job(
        session,
        jobs,
        task=RUN_TASK,
        payload={"run_id": str(run.id)},
        organization_id=principal.organization_id,
        submitted_by_id=principal.user_id,
        # The model endpoint is retried inside the run; a job retry is for a worker that died.
        max_attempts=2,
        run_at=job_run_at,
        held=held,
    )
    run.job_id = job.id
    if held is not None and held.claim is not None:
        assert job.started_at is not None
        run.status, run.started_at = RunStatus.running, job.started_at
        held.handed = StartedRun(agent_id, input_text, parameters, job.started_at)
    elif streamed:
        run.status, run.started_at = RunStatus.running, now
    await insert_row(session, run)
    return run


async def run_or_defer(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    jobs: JobControl,
    principal: Principal,
    request: RunIn,
    *,
    max_input_chars: int,
    wait_seconds: float | None,
) -> tuple[AgentRun, bool]:
    """Records the run and its job, then waits up to `wait_seconds` (None: not at all) for
    the job to finish it. Returns the run and whether it finished within the wait.

    The one service that commits, against `tandem.db`'s rule that the request commits at its
    end: an executor cannot see the job, let alone run it, until the transaction that
    submitted it has committed, and the request must wait for the run before it can end. The
    commit happens after every check (a refused run writes nothing); the request's own
    commit at its end then has nothing left to write.

    A waiting request whose process runs jobs and has a slot free for the organization
    holds that slot: its transaction inserts the job already claimed, and once committed the
    job starts here at once, as one of the executor's jobs (leases, cancellation, shutdown
    and retries as for any claim). Otherwise an executor claims the job as usual.
    """
    if wait_seconds is None:
        run = await submit_run(session, jobs, principal, request, max_input_chars=max_input_chars)
        await session.commit()
        return run, False
    executor = jobs.executor
    held = executor.hold_slot(principal.organization_id) if executor is not None else None
    try:
        run = await submit_run(
            session, jobs, principal, request, max_input_chars=max_input_chars, held=held
        )
    except BaseException:
        if held is not None:
            held.release()
        raise
    # Before the commit: from then on an executor may finish the run at any moment.
    finished = _finished_here[run.id] = asyncio.get_running_loop().create_future()
    try:
        try:
            await session.commit()
        except asyncio.CancelledError:
            # Committed or not, starting it is safe: its task changes nothing unless its
            # claim holds the job's row.
            if held is not None:
                held.start()
            raise
        except BaseException:
            if held is not None:
                held.release()
            raise
        running_here = held.start() if held is not None else None
        async with asyncio.timeout(wait_seconds):
            return await until_finished(sessionmaker, run, finished, running_here), True
    except TimeoutError:
        return await load_run(sessionmaker, run.id), False
    finally:
        _finished_here.pop(run.id, None)


async def load_run(sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> AgentRun:
    async with sessionmaker() as session:
        await session.connection(execution_options=READ_ONLY)
        return await session.get_one(AgentRun, run_id)


async def until_finished(
    sessionmaker: async_sessionmaker[AsyncSession],
    run: AgentRun,
    finished: asyncio.Future[dict[str, Any]],
    running_here: "asyncio.Task[Any] | None" = None,
) -> AgentRun:
    """Waits for the run's job to finish it (the caller bounds the wait): `finished` carries
    the columns written by a finish in this process; otherwise the row is polled. With
    `running_here` (the job's task in this process's executor) there is nothing to poll
    until that task has ended without finishing the run (handed back, lease lost)."""
    if running_here is not None:
        await asyncio.wait([finished, running_here], return_when=asyncio.FIRST_COMPLETED)
    while True:
        with contextlib.suppress(TimeoutError):
            values = await asyncio.wait_for(asyncio.shield(finished), WAIT_POLL_SECONDS)
            for name, value in values.items():
                # As loaded, not as changed: the request has nothing left to write.
                set_committed_value(run, name, value)
            return run
        polled = await load_run(sessionmaker, run.id)
        if polled.status in FINISHED:
            return polled


async def get_run(session: AsyncSession, principal: Principal, run_id: uuid.UUID) -> AgentRun:
    return await owned(session, principal, AgentRun, run_id, "Run")


async def list_runs(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    status: RunStatus | None = None,
    agent_id: str | None = None,
) -> tuple[Sequence[AgentRun], int]:
    query = select(AgentRun).where(AgentRun.organization_id == principal.organization_id)
    if status is not None:
        query = query.where(AgentRun.status == status)
    if agent_id is not None:
        query = query.where(AgentRun.agent_id == agent_id)
    return await paginate(session, query.order_by(AgentRun.created_at.desc(), AgentRun.id), params)


def _hand_to_waiter(run_id: uuid.UUID, values: dict[str, Any]) -> None:
    """A request of this process waiting for the run gets what was written (once committed)."""
    if (waiter := _finished_here.get(run_id)) is not None and not waiter.done():
        waiter.set_result(values)


async def _fail_run(
    session: AsyncSession, job_id: uuid.UUID, payload: dict[str, Any], error: str
) -> None:
    """The run's job gave up (it died, or was cancelled): the run will not finish, it fails."""
    run_id = uuid.UUID(payload["run_id"])
    now = utcnow()
    values = {"status": RunStatus.failed, "error": error, "finished_at": now, "updated_at": now}
    failed = await session.execute(
        update(AgentRun)
        .where(AgentRun.id == run_id, AgentRun.status.not_in(FINISHED))
        .values(**values)
        .returning(AgentRun.started_at)
        .execution_options(synchronize_session=False)
    )
    if (row := failed.one_or_none()) is not None:
        values["started_at"] = row.started_at
        call_after_commit(session, lambda: _hand_to_waiter(run_id, values))


async def _revive_run(session: AsyncSession, job_id: uuid.UUID, payload: dict[str, Any]) -> None:
    """The job that failed the run is retried: the run is queued again."""
    await session.execute(
        update(AgentRun)
        .where(
            AgentRun.id == uuid.UUID(payload["run_id"]),
            AgentRun.status == RunStatus.failed,
            AgentRun.job_id == job_id,
        )
        .values(status=RunStatus.queued, error=None, finished_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def _start_run(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID
) -> StartedRun | None:
    """Marks the run running; None if it has finished already."""
    started_at = utcnow()
    async with sessionmaker() as session, session.begin():
        started = await session.execute(
            update(AgentRun)
            .where(
                AgentRun.id == run_id, AgentRun.status.in_([RunStatus.queued, RunStatus.running])
            )
            .values(status=RunStatus.running, started_at=started_at, updated_at=started_at)
            .returning(AgentRun.agent_id, AgentRun.input_text, AgentRun.parameters)
        )
        row = started.one_or_none()
    if row is None:
        return None
    return StartedRun(row.agent_id, row.input_text, row.parameters, started_at)


@task(
    RUN_TASK,
    description="Runs an agent for a recorded agent run (`run_id`).",
    public=False,
    on_retry=_revive_run,
    on_give_up=_fail_run,
    control_scopes=frozenset({Scope.agent_run}),
)
async def execute_run(context: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Idempotent: a run already finished (a re-run after a crash) is not run again."""
    run_id = uuid.UUID(payload["run_id"])
    row: StartedRun | None = context.handed
    if row is None:
        row = await _start_run(context.sessionmaker, run_id)
    if row is None:
        return {"run_id": str(run_id), "status": "already finished"}
    started_at = row.started_at
    models: AgentModels = context.resources["agent_models"]
    values: dict[str, Any]
    try:
        result = await run_agent(
            row.agent_id, row.input_text, row.parameters, model=models.for_agent(row.agent_id)
        )
    except AgentFailed as failure:
        values = {"status": RunStatus.failed, "error": failure.message}
    else:
        values = {
            "status": RunStatus.completed,
            "output": result.output,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "requests": result.requests,
            "model": result.model_name,
        }
    finished_at = utcnow()
    values.update(started_at=started_at, finished_at=finished_at, updated_at=finished_at)

    async def record(session: AsyncSession) -> None:
        await session.execute(
            update(AgentRun)
            .where(AgentRun.id == run_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        call_after_commit(session, lambda: _hand_to_waiter(run_id, values))

    # With the job's success, in its transaction (group commit): one commit for both.
    context.with_success.append(record)
    return {"run_id": str(run_id), "status": values["status"].value}
