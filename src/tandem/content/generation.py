"""The `content.generate` task: the content-writer agent writes a revision's drafts.

Drafts are written concurrently, at most TANDEM_CONTENT_CONCURRENCY model calls at once in
the whole process (one semaphore shared by every generation job), and saved as the next
revision with one guarded update: a job that runs again after a crash finds the revision
written (or the thread decided) and writes nothing. A generation that fails on its last
attempt fails its thread; so does a job given up otherwise (its last lease expired, or it was
cancelled), through the task's `on_give_up`.
"""

import asyncio
import uuid
from typing import Any

import anyio
from pydantic import BaseModel
from pydantic_ai.models import Model
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.agents.providers import AgentModels
from tandem.agents.runner import run_agent
from tandem.agents.spec import AgentFailed
from tandem.content.schemas import ContentRequest
from tandem.content.service import GENERATE_TASK
from tandem.db import READ_ONLY
from tandem.identity.scopes import Scope
from tandem.jobs.registry import TaskContext, task
from tandem.review.models import ReviewThread
from tandem.review.service import (
    drafts_of,
    fail_generation,
    feedback_on,
    revive_generation,
    save_revision,
)
from tandem.review.states import GENERATING
from tandem.settings import Settings

AGENT_ID = "content-writer"
LIMITER = "content_limiter"
MAX_PREVIOUS_DRAFT = 20_000


def resources(settings: Settings) -> dict[str, Any]:
    """What the task needs from its process (see `tandem.tasks.TaskResources`)."""
    return {LIMITER: asyncio.Semaphore(settings.content_concurrency)}


class GeneratePayload(BaseModel):
    thread_id: uuid.UUID
    revision: int  # the revision to write: 1 for the first drafts


class Brief(BaseModel):
    """What one generation needs, read from the thread before the model is called."""

    request: ContentRequest
    previous: list[str] = []
    feedback: str | None = None


class GenerationFailed(Exception):
    pass


async def write_drafts(model: Model, limiter: asyncio.Semaphore, brief: Brief) -> list[str]:
    """`count` drafts, written concurrently under `limiter`, in variant order."""
    request = brief.request
    input_text = request.brief or ", ".join(request.topics)
    drafts = [""] * request.count

    async def write(variant: int) -> None:
        parameters: dict[str, Any] = {
            "topics": request.topics,
            "platform": request.platform,
            "tone": request.tone,
            "brief": request.brief,
            "variant": variant,
        }
        if brief.feedback is not None:
            parameters["feedback"] = brief.feedback
        if variant < len(brief.previous):
            # The agent takes at most this much of a previous draft; a longer one (a model
            # that ran on) is revised from its beginning rather than failing the revision.
            parameters["previous_draft"] = brief.previous[variant][:MAX_PREVIOUS_DRAFT]
        async with limiter:
            result = await run_agent(AGENT_ID, input_text, parameters, model=model)
        drafts[variant] = result.output

    try:
        async with anyio.create_task_group() as group:
            for variant in range(request.count):
                group.start_soon(write, variant)
    except* Exception as failures:
        # The first failure cancelled the other drafts; it is the one worth reporting.
        first = failures.exceptions[0]
        reason = (
            first.message if isinstance(first, AgentFailed) else f"{type(first).__name__}: {first}"
        )
        raise GenerationFailed(reason) from first
    return drafts


async def _read_brief(context: TaskContext, job: GeneratePayload) -> Brief | None:
    """The request and, for a revision after the first, the drafts and feedback it
    revises; None when this revision is not (or no longer) being written."""
    async with context.sessionmaker() as session:
        await session.connection(execution_options=READ_ONLY)
        thread = await session.get(ReviewThread, job.thread_id)
        if thread is None or thread.status not in GENERATING or thread.revision != job.revision - 1:
            return None
        brief = Brief(request=ContentRequest.model_validate(thread.payload))
        if thread.revision > 0:
            previous = await drafts_of(session, thread.id, thread.revision)
            brief.previous = [str(draft) for draft in previous]
            brief.feedback = await feedback_on(session, thread.id, thread.revision)
    return brief


async def _fail_thread(
    session: AsyncSession, job_id: uuid.UUID, payload: dict[str, Any], error: str
) -> None:
    """The job gave up without the task failing the thread itself (its last lease expired,
    or it was cancelled): the drafts will not come."""
    job = GeneratePayload.model_validate(payload)
    await fail_generation(session, job.thread_id, revision=job.revision, error=error)


async def _revive_thread(session: AsyncSession, job_id: uuid.UUID, payload: dict[str, Any]) -> None:
    job = GeneratePayload.model_validate(payload)
    await revive_generation(session, job.thread_id, revision=job.revision, job_id=job_id)


@task(
    GENERATE_TASK,
    description="Writes a content thread's drafts with the content-writer agent "
    "(`thread_id`, `revision`).",
    payload_model=GeneratePayload,
    public=False,
    on_retry=_revive_thread,
    on_give_up=_fail_thread,
    control_scopes=frozenset({Scope.agent_run}),
)
async def generate(context: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    job = GeneratePayload.model_validate(payload)
    result: dict[str, Any] = {"thread_id": str(job.thread_id), "revision": job.revision}
    brief = await _read_brief(context, job)
    if brief is None:
        return result | {"status": "nothing to do"}
    models: AgentModels = context.resources["agent_models"]
    limiter: asyncio.Semaphore = context.resources[LIMITER]
    try:
        drafts = await write_drafts(models.for_agent(AGENT_ID), limiter, brief)
    except Exception as exc:
        if context.last_attempt:
            error = str(exc) if isinstance(exc, GenerationFailed) else repr(exc)
            async with context.sessionmaker() as session, session.begin():
                await fail_generation(session, job.thread_id, revision=job.revision, error=error)
        raise
    async with context.sessionmaker() as session, session.begin():
        saved = await save_revision(session, job.thread_id, revision=job.revision, drafts=drafts)
    return result | {"status": "saved" if saved else "already saved", "drafts": len(drafts)}
