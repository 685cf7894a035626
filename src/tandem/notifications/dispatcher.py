"""Delivering the outbox: claim a due row, hand it to the transport, record the outcome.

Each step is its own short transaction, and none is open while the transport talks to the
SMTP server (on SQLite an open write transaction would block every other writer).

Claiming is a compare-and-set UPDATE (still pending, same `attempts`, still due) that also
pushes `next_attempt_at` a lease into the future. Of two dispatchers, on any database, only
one updates the row; the other sees no row and moves on. The send is bounded by half the
lease, so no one reclaims a row while it may still be in flight.

Delivery is at-least-once: if the process dies (or the dispatcher is stopped) after the SMTP
server accepted a message but before its row says so, the row is claimed again when its lease
expires and sent again. The Message-ID stays the same across attempts (see transport), which
lets mail clients spot the duplicate. Attempts are counted when claimed, so a message whose
every attempt was cut off this way ends `failed` rather than looping.
"""

import asyncio
import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.db import READ_ONLY, utcnow
from tandem.notifications.models import OutboxMessage, OutboxStatus
from tandem.notifications.transport import OutgoingEmail, Transport
from tandem.retry import RetryPolicy
from tandem.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 300.0
MAX_ERROR_LENGTH = 2000


Sessionmaker = async_sessionmaker[AsyncSession]


async def _due(
    sessionmaker: Sessionmaker, now: datetime, batch: int
) -> list[tuple[uuid.UUID, int]]:
    query = (
        select(OutboxMessage.id, OutboxMessage.attempts)
        .where(OutboxMessage.status == OutboxStatus.pending, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at)
        .limit(batch)
    )
    async with sessionmaker() as session:
        # A pure read: on SQLite an idle poll must not take (and wait for) the write lock.
        await session.connection(execution_options=READ_ONLY)
        return [(row.id, row.attempts) for row in await session.execute(query)]


async def _claim(
    sessionmaker: Sessionmaker,
    message_id: uuid.UUID,
    seen_attempts: int,
    now: datetime,
    lease: float,
) -> OutgoingEmail | None:
    statement = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == OutboxStatus.pending,
            OutboxMessage.attempts == seen_attempts,
            OutboxMessage.next_attempt_at <= now,
        )
        .values(
            attempts=OutboxMessage.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease),
            updated_at=utcnow(),
        )
        .returning(OutboxMessage.recipient, OutboxMessage.subject, OutboxMessage.body)
        .execution_options(synchronize_session=False)
    )
    async with sessionmaker() as session, session.begin():
        row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    return OutgoingEmail(id=message_id, recipient=row.recipient, subject=row.subject, body=row.body)


async def _finish(
    sessionmaker: Sessionmaker, message_id: uuid.UUID, attempts: int, values: dict[str, object]
) -> None:
    """Records an outcome, unless the lease ran out and someone else owns the row now."""
    statement = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == OutboxStatus.pending,
            OutboxMessage.attempts == attempts,
        )
        .values(updated_at=utcnow(), **values)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    async with sessionmaker() as session, session.begin():
        recorded = (await session.execute(statement)).one_or_none()
    if recorded is None:
        log.warning("Outbox message %s changed hands before its outcome was recorded", message_id)


async def deliver_due(
    sessionmaker: Sessionmaker,
    transport: Transport,
    *,
    max_attempts: int,
    retry_base_seconds: float,
    now: datetime | None = None,
    batch: int = 50,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> int:
    """Delivers up to `batch` due messages; returns how many were delivered.

    The worker side of the outbox: it owns its transactions. `now` (aware) stands in for the
    clock when deciding what is due and when to retry.
    """
    policy = RetryPolicy(max_attempts=max_attempts, base_seconds=retry_base_seconds)

    def clock() -> datetime:
        return now if now is not None else utcnow()

    delivered = 0
    for message_id, seen_attempts in await _due(sessionmaker, clock(), batch):
        if policy.gives_up(seen_attempts):
            # Every attempt was claimed but none recorded an outcome: deliveries cut off by a
            # dying process (or a lowered limit). Give up instead of crashing in a loop.
            await _finish(sessionmaker, message_id, seen_attempts, _EXHAUSTED)
            continue
        email = await _claim(sessionmaker, message_id, seen_attempts, clock(), lease_seconds)
        if email is None:
            continue  # another dispatcher claimed it first
        attempts = seen_attempts + 1
        try:
            async with asyncio.timeout(lease_seconds / 2):
                await transport.send(email)
        except Exception as exc:
            outcome = _failure(message_id, attempts, exc, policy, clock())
        else:
            outcome = {
                "status": transport.delivered_status,
                "sent_at": utcnow(),
                "last_error": None,
            }
            delivered += 1
        await _finish(sessionmaker, message_id, attempts, outcome)
    return delivered


_EXHAUSTED: dict[str, object] = {
    "status": OutboxStatus.failed,
    "last_error": func.coalesce(
        OutboxMessage.last_error, "Gave up: no attempt recorded an outcome"
    ),
}


def _failure(
    message_id: uuid.UUID, attempts: int, exc: Exception, policy: RetryPolicy, now: datetime
) -> dict[str, object]:
    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
    if policy.gives_up(attempts):
        log.error("Giving up on e-mail %s after %d attempts: %s", message_id, attempts, error)
        return {"status": OutboxStatus.failed, "last_error": error}
    retry_at = now + policy.delay(attempts)
    log.warning(
        "E-mail %s failed (attempt %d), retrying at %s: %s",
        message_id,
        attempts,
        retry_at.isoformat(),
        error,
    )
    return {"last_error": error, "next_attempt_at": retry_at}


class OutboxDispatcher:
    """Background task: deliver what is due, then wait `outbox_poll_seconds` or a `wake()`."""

    def __init__(
        self, sessionmaker: Sessionmaker, transport: Transport, settings: Settings
    ) -> None:
        self.sessionmaker = sessionmaker
        self.transport = transport
        self.settings = settings
        # Long enough for a slow but working SMTP conversation (several timed operations).
        self.lease_seconds = max(DEFAULT_LEASE_SECONDS, 10 * settings.smtp_timeout_seconds)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    def wake(self) -> None:
        """Deliver now rather than at the next poll (e.g. right after a commit)."""
        self._wake.set()

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Lets the current pass finish (by default within the SMTP timeout), ends the loop.

        A pass cut off mid-send may take up to one more SMTP timeout to unwind (aiosmtplib
        says QUIT on the way out).
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        grace = self.settings.smtp_timeout_seconds if grace_seconds is None else grace_seconds
        try:
            await asyncio.wait_for(task, timeout=grace)
        except TimeoutError:
            # wait_for cancelled the pass; a message it was sending is retried after its lease.
            log.warning("Outbox dispatcher stopped in the middle of a delivery pass")

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await deliver_due(
                    self.sessionmaker,
                    self.transport,
                    max_attempts=self.settings.outbox_max_attempts,
                    retry_base_seconds=self.settings.outbox_retry_base_seconds,
                    lease_seconds=self.lease_seconds,
                )
            except Exception:
                log.exception("Outbox delivery pass failed; trying again at the next poll")
            try:
                async with asyncio.timeout(self.settings.outbox_poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass
