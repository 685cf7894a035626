"""Streamed agent runs: `POST /api/v1/agents/run` with `stream: true`.

The request records the run and its job like any run (every check included), marks it
running and answers `text/event-stream` while the model writes:

    event: start     data: {"run_id", "agent_id", "status": "running", "job_id"}
    event: delta     data: {"text": "..."}     a piece of the output, in order
    event: restart   data: {"reason": "..."}   the model answers again (its answer was not
                                               usable): drop the text received so far
    event: run       data: the run as GET /api/v1/agents/runs/{run_id} shows it, last

The run is stored as a non-streamed run is (completed with its output and usage, or failed
with its error). A client that goes away stops the model and leaves the run failed. The job
recorded with the run is the backstop for a server that dies mid-stream: it is due only
after the stream's deadline, and runs the run afresh if it is still running by then (for a
run the stream finished it does nothing).
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator
from datetime import timedelta
from typing import Any

import anyio
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic_ai import AgentRunResultEvent, FinalResultEvent, PartDeltaEvent, PartStartEvent
from pydantic_ai.exceptions import AgentRunError, UserError
from pydantic_ai.messages import TextPart, TextPartDelta, ToolCallPart, ToolCallPartDelta
from pydantic_ai.models import Model
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Receive, Scope, Send

from tandem.agents.models import AgentRun, RunStatus
from tandem.agents.registry import registry
from tandem.agents.runner import describe_failure
from tandem.agents.runs import load_run, submit_run
from tandem.agents.schemas import RunIn, RunOut
from tandem.agents.spec import AgentResult
from tandem.db import utcnow
from tandem.identity.principal import Principal
from tandem.jobs.service import JobControl

log = logging.getLogger(__name__)

# The backstop job is due this long after the stream's own deadline, so that it never runs
# beside a stream that is still going.
BACKSTOP_GRACE_SECONDS = 60.0
DISCONNECTED = "The client disconnected before the streamed run finished; the run was stopped"
RESTARTED = "The model answers again: its previous answer was not usable"

Piece = tuple[str, dict[str, Any]]  # (event name, data)


async def start_streamed_run(
    session: AsyncSession,
    jobs: JobControl,
    principal: Principal,
    request: RunIn,
    *,
    max_input_chars: int,
    timeout_seconds: float,
) -> AgentRun:
    """Records the run (running, from now) and its backstop job, and commits: a refused run
    writes nothing, and the stream's own sessions see the run."""
    backstop = utcnow() + timedelta(seconds=timeout_seconds + BACKSTOP_GRACE_SECONDS)
    run = await submit_run(
        session,
        jobs,
        principal,
        request,
        max_input_chars=max_input_chars,
        job_run_at=backstop,
        streamed=True,
    )
    await session.commit()
    return run


def sse(event: str, data: dict[str, Any] | str) -> str:
    encoded = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return format_sse_event(event=event, data_str=encoded).decode()


async def stream_run(
    sessionmaker: async_sessionmaker[AsyncSession],
    model: Model,
    run: AgentRun,
    *,
    timeout_seconds: float,
) -> AsyncGenerator[str]:
    """The event stream of a run `start_streamed_run` recorded (see the module docstring)."""
    pieces: asyncio.Queue[Piece | None] = asyncio.Queue()
    producer = asyncio.create_task(
        _produce(model, run, pieces, timeout_seconds), name=f"stream-run-{run.id}"
    )
    stored: AgentRun | None = None
    try:
        start = {"run_id": str(run.id), "agent_id": run.agent_id, "status": RunStatus.running}
        yield sse("start", start | {"job_id": str(run.job_id) if run.job_id else None})
        while (piece := await pieces.get()) is not None:
            yield sse(*piece)
        stored = await _store(sessionmaker, run.id, await producer)
        yield sse("run", RunOut.of(stored).model_dump_json())
    finally:
        if stored is None:
            producer.cancel()
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(BaseException):
                    await producer
                await _store(
                    sessionmaker, run.id, {"status": RunStatus.failed, "error": DISCONNECTED}
                )


async def _produce(
    model: Model, run: AgentRun, pieces: asyncio.Queue[Piece | None], timeout_seconds: float
) -> dict[str, Any]:
    """Runs the agent, putting its output on `pieces` as it comes; returns what to store."""
    try:
        async with asyncio.timeout(timeout_seconds):
            result = await _run_streamed(model, run, pieces)
    except (AgentRunError, UserError) as exc:
        return {"status": RunStatus.failed, "error": describe_failure(exc)}
    except TimeoutError:
        error = f"The streamed run did not finish within {timeout_seconds:g} seconds"
        return {"status": RunStatus.failed, "error": error}
    except Exception:
        log.exception("Streamed run %s failed", run.id)
        return {"status": RunStatus.failed, "error": "The run failed on the server"}
    finally:
        pieces.put_nowait(None)
    return {
        "status": RunStatus.completed,
        "output": result.output,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "requests": result.requests,
        "model": result.model_name,
    }


async def _run_streamed(
    model: Model, run: AgentRun, pieces: asyncio.Queue[Piece | None]
) -> AgentResult:
    """The agent's run on `model` with its events read as they happen: the part that is the
    output (pydantic-ai's FinalResultEvent says which) is passed on, text or the output
    tool's arguments; a second output (after a retry) is announced with `restart`."""
    spec = registry.get(run.agent_id)
    parameters = spec.validate_parameters(run.parameters)
    started: dict[int, str] = {}  # part index -> its text so far
    latest: int | None = None
    output_part: int | None = None
    sent_any = False
    prompt = spec.prompt(run.input_text, parameters)
    async with spec.agent.run_stream_events(prompt, deps=parameters, model=model) as events:
        async for event in events:
            if isinstance(event, PartStartEvent):
                latest, output_part = event.index, None
                started[event.index] = _text_of(event.part)
            elif isinstance(event, FinalResultEvent) and latest is not None:
                if sent_any:
                    pieces.put_nowait(("restart", {"reason": RESTARTED}))
                output_part, sent_any = latest, True
                if started[latest]:
                    pieces.put_nowait(("delta", {"text": started[latest]}))
            elif isinstance(event, PartDeltaEvent) and event.index == output_part:
                if text := _delta_text(event.delta):
                    pieces.put_nowait(("delta", {"text": text}))
            elif isinstance(event, AgentRunResultEvent):
                return spec.finished(event.result, model)
    raise AgentRunError("The model run ended without a result")


def _text_of(part: object) -> str:
    if isinstance(part, TextPart):
        return part.content
    if isinstance(part, ToolCallPart):
        return part.args if isinstance(part.args, str) else part.args_as_json_str()
    return ""


def _delta_text(delta: object) -> str:
    if isinstance(delta, TextPartDelta):
        return delta.content_delta
    if isinstance(delta, ToolCallPartDelta) and isinstance(delta.args_delta, str):
        return delta.args_delta
    return ""


async def _store(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID, values: dict[str, Any]
) -> AgentRun:
    """Writes the run's end unless it already has one (its job was cancelled meanwhile, or
    the end was written before the client went away), and returns the run as stored."""
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(AgentRun)
            .where(AgentRun.id == run_id, AgentRun.status == RunStatus.running)
            .values(finished_at=now, updated_at=now, **values)
        )
    return await load_run(sessionmaker, run_id)


class EventStreamResponse(EventSourceResponse):
    """`text/event-stream` that notices a client going away even while no event is being
    sent, and always closes its event source (so that its clean-up runs at once)."""

    def __init__(self, content: AsyncGenerator[str]) -> None:
        super().__init__(content, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._events = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    with contextlib.suppress(OSError):  # the client is gone
                        await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
