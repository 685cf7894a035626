"""How a job that became runnable reaches an executor.

The job row is already in the caller's transaction; a dispatch only makes sure someone picks
it up once that transaction commits: embedded executors are woken in-process, and the
distributed executor gets a procrastinate job deferred on the same connection (see
`tandem.jobs.distributed`).
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import call_after_commit


class Dispatch(Protocol):
    async def enqueue(self, session: AsyncSession, job_id: uuid.UUID, run_at: datetime) -> None:
        """Called inside the transaction that made `job_id` runnable at `run_at`."""

    async def cancel(self, session: AsyncSession, job_id: uuid.UUID) -> None:
        """Called inside the transaction that asked the running job `job_id` to stop. Any
        executor notices at its next heartbeat; this may tell one sooner."""


class InProcessDispatch:
    """Executors in this process poll for due jobs; a commit that adds one wakes them now."""

    def __init__(self) -> None:
        self._wakers: list[Callable[[], None]] = []
        self._stoppers: list[Callable[[uuid.UUID], None]] = []

    def subscribe(
        self, wake: Callable[[], None], stop: Callable[[uuid.UUID], None] | None = None
    ) -> None:
        """`wake` when a job is due; `stop(job_id)` when a running job is to be cancelled."""
        self._wakers.append(wake)
        if stop is not None:
            self._stoppers.append(stop)

    def unsubscribe(
        self, wake: Callable[[], None], stop: Callable[[uuid.UUID], None] | None = None
    ) -> None:
        if wake in self._wakers:
            self._wakers.remove(wake)
        if stop in self._stoppers:
            self._stoppers.remove(stop)

    def wake_all(self) -> None:
        for wake in list(self._wakers):
            wake()

    async def enqueue(self, session: AsyncSession, job_id: uuid.UUID, run_at: datetime) -> None:
        call_after_commit(session, self.wake_all)

    async def cancel(self, session: AsyncSession, job_id: uuid.UUID) -> None:
        def stop_all() -> None:
            for stop in list(self._stoppers):
                stop(job_id)

        call_after_commit(session, stop_all)


class PolledDispatch:
    """For jobs submitted deep inside services that hold no dispatch (webhook deliveries,
    review digests): embedded executors find them at their next poll
    (TANDEM_JOB_POLL_SECONDS), distributed workers through the orphan sweep."""

    async def enqueue(self, session: AsyncSession, job_id: uuid.UUID, run_at: datetime) -> None:
        return None

    async def cancel(self, session: AsyncSession, job_id: uuid.UUID) -> None:
        return None
