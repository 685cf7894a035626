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


class InProcessDispatch:
    """Executors in this process poll for due jobs; a commit that adds one wakes them now."""

    def __init__(self) -> None:
        self._wakers: list[Callable[[], None]] = []

    def subscribe(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        if wake in self._wakers:
            self._wakers.remove(wake)

    def wake_all(self) -> None:
        for wake in list(self._wakers):
            wake()

    async def enqueue(self, session: AsyncSession, job_id: uuid.UUID, run_at: datetime) -> None:
        call_after_commit(session, self.wake_all)
