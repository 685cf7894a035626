"""Tasks: async functions registered by name. Task code is idempotent (it may run again)."""

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.errors import Invalid
from tandem.identity.scopes import Scope
from tandem.jobs.models import Job, JobStatus
from tandem.plugins import TASKS, Registry
from tandem.settings import Settings


@dataclass(frozen=True)
class TaskContext:
    job_id: uuid.UUID
    attempt: int  # 1 for the first attempt of the current budget
    run: int  # 1 for the first attempt ever (numbers the attempt history)
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    # Process-wide services a task may need (the model provider, ...), set by the executor.
    resources: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 1  # the job's attempt budget
    organization_id: uuid.UUID | None = None
    # `async with context.outside_slot():` around a long wait for something else (the solver):
    # meanwhile the job does not count against its executor's job slots.
    outside_slot: Callable[[], AbstractAsyncContextManager[None]] = contextlib.nullcontext
    # What the submitter handed the task in memory when it inserted the job already claimed
    # and started it in its own process (see `Executor.hold_slot`); None on every other run
    # (a retry, a claim, another process), where the task reads what it needs.
    handed: Any = None
    # Writes the task's success brings with it (its domain row's outcome), made in the
    # transaction that records the success, and only if that records it: they commit
    # together, or neither does (the claim was lost, the job runs again).
    with_success: "list[SuccessWrite]" = field(default_factory=list)

    @property
    def last_attempt(self) -> bool:
        """A failure now sends the job to `dead`: the task's domain row should say so."""
        return self.attempt >= self.max_attempts


SuccessWrite = Callable[[AsyncSession], Awaitable[None]]
TaskFunction = Callable[[TaskContext, dict[str, Any]], Awaitable[Any]]
# Called with (session, job id, payload) in the transaction that takes a dead or cancelled
# job back to pending: what the job works for (a review thread, a schedule) was given up with
# the job, and comes back with it.
RetryHook = Callable[[AsyncSession, uuid.UUID, dict[str, Any]], Awaitable[None]]
# Called with (session, job id, payload, error) in the transaction that records the job dead
# or cancelled: what the job works for will not get its result, and says so (with `error`).
GiveUpHook = Callable[[AsyncSession, uuid.UUID, dict[str, Any], str], Awaitable[None]]


@dataclass(frozen=True)
class TaskDefinition:
    name: str
    description: str
    function: TaskFunction
    payload_model: type[BaseModel] | None = None
    # Internal tasks belong to a domain row (an agent run, a review thread, a schedule) and
    # are started by that domain's endpoints only, never through POST /api/v1/jobs.
    public: bool = True
    on_retry: RetryHook | None = None
    on_give_up: GiveUpHook | None = None
    # Retrying or cancelling an internal task's job changes its domain row (a schedule's
    # generation starts or stops): beyond jobs:write it takes the scopes of the endpoint that
    # starts the task.
    control_scopes: frozenset[Scope] = frozenset()

    def validated_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload, checked against the task's model when it has one (422 otherwise)."""
        if self.payload_model is None:
            return payload
        try:
            self.payload_model.model_validate(payload)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = ("body", "payload", *(str(part) for part in error["loc"]))
            raise Invalid(f"{self.name}: {error['msg']}", loc=loc) from exc
        return payload

    async def __call__(self, context: TaskContext, payload: dict[str, Any]) -> Any:
        return await self.function(context, payload)


def task(
    name: str,
    *,
    description: str,
    payload_model: type[BaseModel] | None = None,
    public: bool = True,
    on_retry: RetryHook | None = None,
    on_give_up: GiveUpHook | None = None,
    control_scopes: frozenset[Scope] = frozenset(),
) -> Callable[[TaskFunction], TaskDefinition]:
    """Makes a function a task: the definition a provider names in `tandem.plugins` (group
    `tandem.tasks`). It is still called like the function."""

    def define(function: TaskFunction) -> TaskDefinition:
        return TaskDefinition(
            name,
            description,
            function,
            payload_model,
            public,
            on_retry=on_retry,
            on_give_up=on_give_up,
            control_scopes=control_scopes,
        )

    return define


class UnknownTask(LookupError):
    pass


class TaskRegistry(Registry[TaskDefinition]):
    what = "Task"
    item_type = TaskDefinition

    def unknown(self, name: str) -> Exception:
        return UnknownTask(name)

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(sorted(self.all(), key=lambda t: t.name))

    def public(self) -> list[TaskDefinition]:
        """The tasks anyone with jobs:write may submit by name."""
        return [definition for definition in self if definition.public]

    async def gave_up(self, session: AsyncSession, job: Job) -> None:
        """Runs the task's `on_give_up` hook for `job`, just recorded dead or cancelled, in
        the transaction that recorded it (a task no longer in the code has nothing to do)."""
        try:
            hook = self.get(job.task).on_give_up
        except UnknownTask:
            return
        if hook is None:
            return
        if job.status is JobStatus.dead:
            error = job.last_error or "The job died"
        else:
            error = "The job was cancelled"
        await hook(session, job.id, job.payload, error)


registry = TaskRegistry(group=TASKS)
