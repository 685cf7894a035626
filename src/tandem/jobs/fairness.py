"""Sharing slots between organizations, so that one tenant's backlog cannot starve another.

Two places hand out scarce slots: an executor's claim (job slots) and the solver limiter
(CP-SAT solves). Both use the same rule: a free slot goes to the organization with the
fewest running, among those under their cap; on a tie, the one served least recently, then
the oldest waiter; within an organization, first come first served.
"""

import asyncio
import itertools
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

# Jobs without an organization (system jobs) share slots as one more tenant.
Tenant = uuid.UUID | None


@dataclass(frozen=True)
class Backlog:
    """One organization's due pending jobs: how many, and since when the oldest is due."""

    organization_id: Tenant
    due: int
    oldest: datetime


@dataclass(frozen=True)
class Caps:
    """Most jobs of one organization running at once: in this process, and in all (None: no
    limit beyond the process's)."""

    per_process: int
    total: int | None = None


def _room(caps: Caps, here: int, total: int) -> bool:
    return here < caps.per_process and (caps.total is None or total < caps.total)


def in_line(
    oldest_due: Mapping[Tenant, datetime],
    slots: int,
    caps: Caps,
    *,
    running_total: Mapping[Tenant, int],
    running_here: Mapping[Tenant, int],
    last_served: Mapping[Tenant, int] | None = None,
) -> list[Tenant]:
    """The organizations (with due jobs since `oldest_due`) a claim of `slots` slots looks
    at: those with room under their caps, in the order `share` serves them, at most `slots`
    (each gets a slot before any gets a second)."""
    served = last_served or {}
    with_room = [
        organization
        for organization in oldest_due
        if _room(caps, running_here.get(organization, 0), running_total.get(organization, 0))
    ]
    with_room.sort(key=lambda o: (running_total.get(o, 0), served.get(o, -1), oldest_due[o]))
    return with_room[:slots]


def share(
    backlogs: Sequence[Backlog],
    slots: int,
    caps: Caps,
    *,
    running_total: Mapping[Tenant, int],
    running_here: Mapping[Tenant, int],
    last_served: Mapping[Tenant, int] | None = None,
) -> dict[Tenant, int]:
    """How many of `slots` free slots each organization's backlog gets: one at a time, each to
    the organization with the fewest running jobs (`running_total` plus those given here)
    that still has due jobs and room under its caps; on a tie, the one `last_served` longest
    ago (a counter; never served is -1), then the one whose oldest job is due longest."""
    served = last_served or {}
    given: Counter[Tenant] = Counter()
    for _ in range(slots):
        candidates = [
            b
            for b in backlogs
            if given[b.organization_id] < b.due
            and running_here.get(b.organization_id, 0) + given[b.organization_id] < caps.per_process
            and (
                caps.total is None
                or running_total.get(b.organization_id, 0) + given[b.organization_id] < caps.total
            )
        ]
        if not candidates:
            break
        chosen = min(
            candidates,
            key=lambda b: (
                running_total.get(b.organization_id, 0) + given[b.organization_id],
                served.get(b.organization_id, -1),
                b.oldest,
            ),
        )
        given[chosen.organization_id] += 1
    return dict(given)


class FairLimiter:
    """An asyncio semaphore shared fairly by key: at most `capacity` holders, at most
    `per_key` of one key; a released slot goes to the waiting key with the fewest holders
    (on a tie, the one served least recently, then the earliest waiter), not to whoever
    asked first."""

    def __init__(self, capacity: int, per_key: int) -> None:
        self.capacity = capacity
        self.per_key = per_key
        self._holders: Counter[Hashable] = Counter()
        self._waiters: deque[tuple[int, Hashable, asyncio.Future[None]]] = deque()
        self._order = itertools.count()
        self._last_served: dict[Hashable, int] = {}

    def would_wait(self, key: Hashable) -> bool:
        return not self._may_take(key) or any(k == key for _, k, _ in self._waiters)

    def holders(self, key: Hashable) -> int:
        return self._holders[key]

    def _may_take(self, key: Hashable) -> bool:
        return sum(self._holders.values()) < self.capacity and self._holders[key] < self.per_key

    @asynccontextmanager
    async def slot(
        self, key: Hashable, *, on_wait: Callable[[], Awaitable[object]] | None = None
    ) -> AsyncIterator[None]:
        """Holds a slot for `key`. If it has to wait, `on_wait` runs once the waiter is in
        line, so that what it announces ("waiting") is already true."""
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._order), key, granted)
        self._waiters.append(entry)
        self._grant()
        try:
            if on_wait is not None and not granted.done():
                await on_wait()
            await granted
        except BaseException:
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif granted.done() and not granted.cancelled():
                self._release(key)  # granted just as we gave up: pass it on
            raise
        try:
            yield
        finally:
            self._release(key)

    def _release(self, key: Hashable) -> None:
        self._holders[key] -= 1
        if self._holders[key] <= 0:
            del self._holders[key]
        self._grant()

    def _grant(self) -> None:
        while True:
            eligible = [entry for entry in self._waiters if self._may_take(entry[1])]
            if not eligible:
                return
            chosen = min(
                eligible,
                key=lambda entry: (
                    self._holders[entry[1]],
                    self._last_served.get(entry[1], -1),
                    entry[0],
                ),
            )
            self._waiters.remove(chosen)
            self._holders[chosen[1]] += 1
            self._last_served[chosen[1]] = next(self._order)
            chosen[2].set_result(None)
