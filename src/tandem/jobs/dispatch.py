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

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.db import bind_session_info, call_after_commit

# Where a session carries the dispatch of the process that made it (see `bind_dispatch`).
DISPATCH_KEY = "tandem_dispatch"


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


def bind_dispatch(sessionmaker: async_sessionmaker[AsyncSession], dispatch: "Dispatch") -> None:
    """Every session `sessionmaker` makes carries `dispatch`: a job submitted through
    `SessionDispatch` in one of its transactions is dispatched as the jobs API's are."""
    bind_session_info(sessionmaker, **{DISPATCH_KEY: dispatch})


class SessionDispatch:
    """For jobs submitted deep inside services that hold no dispatch of their own (webhook
    deliveries, review digests): the dispatch the session's process bound to its sessions
    (`bind_dispatch`: the app's for requests and the embedded executor, the worker's in
    `tandem worker`), so such a job reaches an executor when its transaction commits, like
    one submitted through the jobs API. A session made elsewhere (a script, a test's joined
    session) has none: its jobs wait for an executor's poll or the workers' orphan sweep."""

    async def enqueue(self, session: AsyncSession, job_id: uuid.UUID, run_at: datetime) -> None:
        dispatch: Dispatch | None = session.info.get(DISPATCH_KEY)
        if dispatch is not None:
            await dispatch.enqueue(session, job_id, run_at)

    async def cancel(self, session: AsyncSession, job_id: uuid.UUID) -> None:
        dispatch: Dispatch | None = session.info.get(DISPATCH_KEY)
        if dispatch is not None:
            await dispatch.cancel(session, job_id)
