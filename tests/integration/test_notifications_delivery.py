"""Delivering the outbox through a real SMTP server, on databases whose commits are real.

`deliver_due` owns its transactions and must see rows other sessions committed, which the
rolled-back test transaction cannot offer (on SQLite it holds the only write lock), so these
tests use a migrated database of their own (a file on SQLite, a new database on PostgreSQL)
where commits are real, emptied before each test.
"""

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tandem.app import create_app
from tandem.db import create_engine, create_sessionmaker, utcnow
from tandem.migrations import upgrade_to_head
from tandem.notifications.dispatcher import OutboxDispatcher, deliver_due
from tandem.notifications.models import OutboxMessage, OutboxStatus
from tandem.notifications.service import enqueue_email
from tandem.notifications.transport import LogTransport, transport_from_settings
from tandem.settings import Settings
from tests.conftest import CommittedDatabase, running
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

WaitUntil = Callable[..., Awaitable[Any]]
SENDER = "tandem@example.org"


def smtp_settings(server: SmtpServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_from": SENDER,
        "smtp_timeout_seconds": 5,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


async def enqueue_committed(
    db: CommittedDatabase, to: str = "ada@example.com", **kw: Any
) -> uuid.UUID:
    kw.setdefault("subject", "Welcome")
    kw.setdefault("body", "Hello Ada\n")
    async with db.sessionmaker() as session, session.begin():
        message = await enqueue_email(session, to=to, **kw)
    return message.id


async def load(db: CommittedDatabase, message_id: uuid.UUID) -> OutboxMessage:
    async with db.sessionmaker() as session:
        return await session.get_one(OutboxMessage, message_id)


async def delivered_row(db: CommittedDatabase, message_id: uuid.UUID) -> OutboxMessage | None:
    """The row once it has left `pending`, else None (for wait_until)."""
    row = await load(db, message_id)
    return row if row.status is not OutboxStatus.pending else None


async def test_due_message_is_delivered_through_smtp(
    committed_db: CommittedDatabase, smtp_server: SmtpServer
) -> None:
    message_id = await enqueue_committed(committed_db, subject="Welcome", body="Hello Ada\n")
    transport = transport_from_settings(smtp_settings(smtp_server))
    before = utcnow()

    delivered = await deliver_due(
        committed_db.sessionmaker, transport, max_attempts=3, retry_base_seconds=30
    )

    assert delivered == 1
    [received] = smtp_server.received
    assert (received.sender, received.recipients, received.subject, received.body) == (
        SENDER,
        ["ada@example.com"],
        "Welcome",
        "Hello Ada\n",
    )
    assert received.headers["Message-ID"] == f"<{message_id}@example.org>"
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.sent, 1, None)
    assert row.sent_at is not None
    assert before <= row.sent_at <= utcnow()


async def test_without_smtp_the_message_is_logged(
    committed_db: CommittedDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    message_id = await enqueue_committed(committed_db, subject="Welcome", body="Hello Ada\n")
    transport = transport_from_settings(Settings(_env_file=None, smtp_host=None))  # type: ignore[call-arg]

    with caplog.at_level(logging.INFO, logger="tandem.notifications"):
        delivered = await deliver_due(
            committed_db.sessionmaker, transport, max_attempts=3, retry_base_seconds=30
        )

    assert delivered == 1
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "E-mail to ada@example.com: Welcome\nHello Ada\n" in logged
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.logged, 1, None)
    assert row.sent_at is not None


async def test_refused_message_is_retried_after_the_backoff(
    committed_db: CommittedDatabase, smtp_server: SmtpServer
) -> None:
    message_id = await enqueue_committed(committed_db)
    transport = transport_from_settings(smtp_settings(smtp_server))
    now = utcnow()

    async def deliver(at: datetime) -> int:
        return await deliver_due(
            committed_db.sessionmaker, transport, max_attempts=3, retry_base_seconds=30, now=at
        )

    smtp_server.refuse_with = "451 4.3.0 Try again later"
    assert await deliver(now) == 0
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.sent_at) == (OutboxStatus.pending, 1, None)
    assert row.last_error is not None
    assert "451" in row.last_error
    assert "Try again later" in row.last_error
    assert row.next_attempt_at == now + timedelta(seconds=30)

    smtp_server.refuse_with = None
    assert await deliver(now + timedelta(seconds=29)) == 0  # not due yet
    assert smtp_server.received == []
    assert await deliver(now + timedelta(seconds=30)) == 1

    assert [r.recipients for r in smtp_server.received] == [["ada@example.com"]]
    assert smtp_server.refused == 1
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.sent, 2, None)


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param("451 4.3.0 Try again later", id="temporary-4xx"),
        pytest.param("550 5.1.1 Mailbox unavailable", id="permanent-5xx"),
    ],
)
async def test_message_fails_after_max_attempts(
    committed_db: CommittedDatabase, smtp_server: SmtpServer, refusal: str
) -> None:
    message_id = await enqueue_committed(committed_db)
    transport = transport_from_settings(smtp_settings(smtp_server))
    smtp_server.refuse_with = refusal
    now = utcnow()
    hour = timedelta(hours=1)

    results = [
        await deliver_due(
            committed_db.sessionmaker, transport, max_attempts=2, retry_base_seconds=1, now=at
        )
        for at in (now, now + hour, now + 2 * hour)
    ]

    assert results == [0, 0, 0]
    assert smtp_server.refused == 2  # the third call found nothing due
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.sent_at) == (OutboxStatus.failed, 2, None)
    assert row.last_error is not None
    assert refusal.split()[0] in row.last_error


async def deliver_until_cut_off(
    db: CommittedDatabase, smtp_server: SmtpServer, wait_until: WaitUntil, **kw: Any
) -> None:
    """A delivery pass that dies once the server has the message but before it answers."""
    transport = transport_from_settings(smtp_settings(smtp_server))
    smtp_server.hold_replies()
    async with anyio.create_task_group() as group:
        group.start_soon(partial(deliver_due, db.sessionmaker, transport, **kw))
        await wait_until(lambda: smtp_server.received)
        group.cancel_scope.cancel()
    smtp_server.release_replies()


async def test_delivery_cut_off_mid_send_is_repeated_after_the_lease(
    committed_db: CommittedDatabase, smtp_server: SmtpServer, wait_until: WaitUntil
) -> None:
    message_id = await enqueue_committed(committed_db)
    now = utcnow()
    policy = {"max_attempts": 3, "retry_base_seconds": 30, "lease_seconds": 60}

    await deliver_until_cut_off(committed_db, smtp_server, wait_until, now=now, **policy)

    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.last_error, row.sent_at) == (
        OutboxStatus.pending,
        1,
        None,
        None,
    )
    assert row.next_attempt_at == now + timedelta(seconds=60)
    transport = transport_from_settings(smtp_settings(smtp_server))
    later = now + timedelta(seconds=59)
    assert await deliver_due(committed_db.sessionmaker, transport, now=later, **policy) == 0
    lease_over = now + timedelta(seconds=60)
    assert await deliver_due(committed_db.sessionmaker, transport, now=lease_over, **policy) == 1

    # At least once: the server got it twice, as the same message.
    first, second = smtp_server.received
    assert (
        first.headers["Message-ID"] == second.headers["Message-ID"] == f"<{message_id}@example.org>"
    )
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts) == (OutboxStatus.sent, 2)


async def test_message_whose_last_attempt_was_cut_off_fails_instead_of_looping(
    committed_db: CommittedDatabase, smtp_server: SmtpServer, wait_until: WaitUntil
) -> None:
    message_id = await enqueue_committed(committed_db)
    now = utcnow()
    policy = {"max_attempts": 1, "retry_base_seconds": 30, "lease_seconds": 60}

    await deliver_until_cut_off(committed_db, smtp_server, wait_until, now=now, **policy)
    transport = transport_from_settings(smtp_settings(smtp_server))
    lease_over = now + timedelta(seconds=60)
    assert await deliver_due(committed_db.sessionmaker, transport, now=lease_over, **policy) == 0

    assert len(smtp_server.received) == 1  # not sent again
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.last_error) == (
        OutboxStatus.failed,
        1,
        "Gave up: no attempt recorded an outcome",
    )


async def test_two_dispatchers_deliver_each_message_once(
    committed_db: CommittedDatabase, smtp_server: SmtpServer
) -> None:
    recipients = [f"user{n}@example.com" for n in range(20)]
    for recipient in recipients:
        await enqueue_committed(committed_db, to=recipient)
    transport = transport_from_settings(smtp_settings(smtp_server))
    # A second engine stands in for a second process: its own connections and transactions.
    other_engine = create_engine(committed_db.url)
    counts: list[int] = []

    async def dispatch(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        counts.append(
            await deliver_due(sessionmaker, transport, max_attempts=3, retry_base_seconds=30)
        )

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(dispatch, committed_db.sessionmaker)
            group.start_soon(dispatch, create_sessionmaker(other_engine))
    finally:
        await other_engine.dispose()

    assert sum(counts) == 20
    assert sorted(r.recipients[0] for r in smtp_server.received) == sorted(recipients)
    async with committed_db.sessionmaker() as session:
        states = (
            await session.execute(
                select(OutboxMessage.status, OutboxMessage.attempts, func.count()).group_by(
                    OutboxMessage.status, OutboxMessage.attempts
                )
            )
        ).all()
    assert [tuple(s) for s in states] == [(OutboxStatus.sent, 1, 20)]


async def test_concurrent_enqueues_with_one_dedupe_key_keep_one_row(
    committed_db: CommittedDatabase, wait_until: WaitUntil
) -> None:
    second_result: list[uuid.UUID] = []
    second_started = anyio.Event()

    async def enqueue_second() -> None:
        async with committed_db.sessionmaker() as session, session.begin():
            second_started.set()
            message = await enqueue_email(
                session, to="ada@example.com", subject="Second", body="x\n", dedupe_key="job-9"
            )
            second_result.append(message.id)

    async def second_is_waiting() -> bool:
        if not committed_db.is_postgresql:
            return True  # SQLite's busy wait cannot be observed; the outcome is the same
        query = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        async with committed_db.sessionmaker() as observer:
            return bool((await observer.execute(query)).scalar_one())

    async with (
        anyio.create_task_group() as group,
        committed_db.sessionmaker() as first,
        first.begin(),
    ):
        mine = await enqueue_email(
            first, to="ada@example.com", subject="First", body="x\n", dedupe_key="job-9"
        )
        group.start_soon(enqueue_second)
        await second_started.wait()
        # On PostgreSQL the second insert now waits on the unique index for this commit.
        await wait_until(second_is_waiting)

    assert second_result == [mine.id]
    async with committed_db.sessionmaker() as session:
        subjects = (await session.execute(select(OutboxMessage.subject))).scalars().all()
    assert subjects == ["First"]


async def test_dispatcher_delivers_on_its_loop_and_when_woken(
    committed_db: CommittedDatabase, smtp_server: SmtpServer, wait_until: WaitUntil
) -> None:
    # A poll far longer than wait_until's deadline: only the first pass and wake() deliver.
    settings = smtp_settings(smtp_server, outbox_poll_seconds=600)
    dispatcher = OutboxDispatcher(
        committed_db.sessionmaker, transport_from_settings(settings), settings
    )
    first_id = await enqueue_committed(committed_db, to="first@example.com")
    dispatcher.start()
    try:
        await wait_until(lambda: len(smtp_server.received) == 1)
        second_id = await enqueue_committed(committed_db, to="second@example.com")
        dispatcher.wake()
        await wait_until(lambda: len(smtp_server.received) == 2)
    finally:
        await dispatcher.stop()

    assert [r.recipients for r in smtp_server.received] == [
        ["first@example.com"],
        ["second@example.com"],
    ]
    for message_id in (first_id, second_id):
        assert (await load(committed_db, message_id)).status is OutboxStatus.sent


async def test_stopping_the_dispatcher_mid_send_leaves_the_message_for_a_retry(
    committed_db: CommittedDatabase,
    smtp_server: SmtpServer,
    wait_until: WaitUntil,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiosmtplib says QUIT when cancelled, and waits for the held server up to this timeout.
    settings = smtp_settings(smtp_server, smtp_timeout_seconds=1)
    dispatcher = OutboxDispatcher(
        committed_db.sessionmaker, transport_from_settings(settings), settings
    )
    message_id = await enqueue_committed(committed_db)
    smtp_server.hold_replies()
    dispatcher.start()
    try:
        await wait_until(lambda: smtp_server.received)
    finally:
        with caplog.at_level(logging.WARNING, logger="tandem.notifications"):
            await dispatcher.stop(grace_seconds=0.05)  # well before the SMTP timeout

    assert "Outbox dispatcher stopped in the middle of a delivery pass" in caplog.messages
    row = await load(committed_db, message_id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.pending, 1, None)
    assert row.next_attempt_at > utcnow()  # leased: due again once the lease is over


async def test_dispatcher_survives_a_failing_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, wait_until: WaitUntil
) -> None:
    """A database without the outbox table makes every pass fail, until it is migrated."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'late.db'}")
    db = CommittedDatabase(str(engine.url), create_sessionmaker(engine))
    settings = Settings(_env_file=None, outbox_poll_seconds=0.02)  # type: ignore[call-arg]
    dispatcher = OutboxDispatcher(db.sessionmaker, LogTransport(), settings)

    def failed_passes() -> int:
        return sum("Outbox delivery pass failed" in r.getMessage() for r in caplog.records)

    try:
        with caplog.at_level(logging.INFO, logger="tandem.notifications"):
            dispatcher.start()
            await wait_until(lambda: failed_passes() >= 2)  # the loop kept going
            await upgrade_to_head(engine)
            message_id = await enqueue_committed(db)
            row = await wait_until(lambda: delivered_row(db, message_id))
    finally:
        await dispatcher.stop()
        await engine.dispose()

    assert row.status is OutboxStatus.logged
    errors = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert errors
    assert all("no such table: outbox_messages" in error for error in errors)


async def test_app_lifespan_runs_the_dispatcher(
    committed_db: CommittedDatabase, smtp_server: SmtpServer, wait_until: WaitUntil
) -> None:
    settings = smtp_settings(smtp_server, database_url=committed_db.url, outbox_poll_seconds=0.02)
    message_id = await enqueue_committed(committed_db, subject="From the app")
    async with running(create_app(settings)):
        await wait_until(lambda: smtp_server.received)
    assert [r.subject for r in smtp_server.received] == ["From the app"]
    assert (await load(committed_db, message_id)).status is OutboxStatus.sent
