"""Putting e-mails in the outbox: part of the caller's transaction, deduplicated by key."""

import uuid

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tandem.db import utcnow
from tandem.errors import Invalid
from tandem.models import Organization, OutboxMessage
from tandem.notifications.models import OutboxStatus
from tandem.notifications.service import enqueue_email
from tests.factories import OrganizationFactory, OutboxMessageFactory

pytestmark = pytest.mark.anyio


async def count_outbox(session_or_connection: AsyncSession | AsyncConnection) -> int:
    query = select(func.count()).select_from(OutboxMessage)
    return (await session_or_connection.execute(query)).scalar_one()


async def test_enqueue_adds_a_pending_row_due_now(db_session: AsyncSession) -> None:
    organization = await OrganizationFactory.create_async()
    before = utcnow()
    message = await enqueue_email(
        db_session,
        to="ada@example.com",
        subject="Welcome",
        body="Hello Ada\n",
        organization_id=organization.id,
    )
    row = (
        await db_session.execute(
            select(
                OutboxMessage.organization_id,
                OutboxMessage.recipient,
                OutboxMessage.subject,
                OutboxMessage.body,
                OutboxMessage.status,
                OutboxMessage.attempts,
                OutboxMessage.last_error,
                OutboxMessage.sent_at,
                OutboxMessage.dedupe_key,
            ).where(OutboxMessage.id == message.id)
        )
    ).one()
    assert tuple(row) == (
        organization.id,
        "ada@example.com",
        "Welcome",
        "Hello Ada\n",
        OutboxStatus.pending,
        0,
        None,
        None,
        None,
    )
    assert before <= message.next_attempt_at <= utcnow()


async def test_enqueued_email_is_dropped_with_the_callers_rollback(
    db_session: AsyncSession, db_connection: AsyncConnection
) -> None:
    await enqueue_email(db_session, to="ada@example.com", subject="Hi", body="Hi\n")
    assert await count_outbox(db_connection) == 1
    await db_session.rollback()  # had enqueue_email committed, the row would survive this
    assert await count_outbox(db_connection) == 0


@pytest.mark.parametrize(
    ("keys", "stored_subjects"),
    [
        pytest.param((None, None), ["Try 0", "Try 1"], id="no-key-never-deduplicates"),
        pytest.param(("job-1:welcome", "job-2:welcome"), ["Try 0", "Try 1"], id="different-keys"),
        pytest.param(("job-1:welcome", "job-1:welcome"), ["Try 0"], id="same-key-keeps-the-first"),
    ],
)
async def test_dedupe_key_keeps_one_row_per_key(
    db_session: AsyncSession, keys: tuple[str | None, str | None], stored_subjects: list[str]
) -> None:
    returned = [
        await enqueue_email(
            db_session, to="ada@example.com", subject=f"Try {n}", body="x\n", dedupe_key=key
        )
        for n, key in enumerate(keys)
    ]
    stored = (await db_session.execute(select(OutboxMessage.subject))).scalars().all()
    assert sorted(stored) == stored_subjects
    assert len({message.id for message in returned}) == len(stored_subjects)


async def test_dedupe_key_finds_a_row_written_earlier(db_session: AsyncSession) -> None:
    earlier = await OutboxMessageFactory.create_async(
        dedupe_key="job-7:done", status=OutboxStatus.sent, sent_at=utcnow()
    )
    again = await enqueue_email(
        db_session, to="ada@example.com", subject="Job 7 done", body="x\n", dedupe_key="job-7:done"
    )
    assert again.id == earlier.id
    assert again.status is OutboxStatus.sent
    assert await count_outbox(db_session) == 1


async def test_other_constraint_errors_surface_and_leave_the_transaction_usable(
    db_session: AsyncSession,
) -> None:
    with pytest.raises(IntegrityError):
        await enqueue_email(
            db_session,
            to="ada@example.com",
            subject="Hi",
            body="Hi\n",
            organization_id=uuid.uuid4(),  # no such organization
            dedupe_key="orphan",
        )
    kept = await enqueue_email(db_session, to="bob@example.com", subject="Hi", body="Hi\n")
    assert await count_outbox(db_session) == 1
    assert kept.recipient == "bob@example.com"


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        pytest.param("ada@example.com\nBcc: all@example.com", "Hi", id="newline-in-recipient"),
        pytest.param("ada@example.com", "Hi\r\nBcc: all@example.com", id="crlf-in-subject"),
    ],
)
async def test_header_injection_is_refused(db_session: AsyncSession, to: str, subject: str) -> None:
    with pytest.raises(Invalid, match="must be a single line"):
        await enqueue_email(db_session, to=to, subject=subject, body="Hi\n")
    assert await count_outbox(db_session) == 0


async def test_deleting_an_organization_deletes_its_outbox(db_session: AsyncSession) -> None:
    doomed, kept = [await OrganizationFactory.create_async() for _ in range(2)]
    await OutboxMessageFactory.create_async(organization_id=doomed.id)
    survivor = await OutboxMessageFactory.create_async(organization_id=kept.id)
    await db_session.execute(delete(Organization).where(Organization.id == doomed.id))
    remaining = (await db_session.execute(select(OutboxMessage.id))).scalars().all()
    assert remaining == [survivor.id]


async def test_status_outside_the_enum_is_refused_by_the_database(
    db_session: AsyncSession,
) -> None:
    message = await OutboxMessageFactory.create_async()
    with pytest.raises(IntegrityError, match="ck_outbox_messages_status"):
        await db_session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message.id).values(status="bogus")
        )
