"""Putting e-mails in the outbox. Part of the caller's transaction: flush, never commit."""

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.errors import Invalid
from tandem.notifications.models import OutboxMessage


async def _find_by_dedupe_key(session: AsyncSession, dedupe_key: str) -> OutboxMessage | None:
    query = select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
    return (await session.execute(query)).scalar_one_or_none()


async def enqueue_email(
    session: AsyncSession,
    *,
    to: str,
    subject: str,
    body: str,
    organization_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
) -> OutboxMessage:
    """Adds a pending e-mail; it is delivered only if the caller's transaction commits.

    With a `dedupe_key` already in the outbox, returns that row and adds nothing.
    """
    for field, value in (("to", to), ("subject", subject)):
        if "\r" in value or "\n" in value:
            raise Invalid(f"E-mail {field} must be a single line")

    message = OutboxMessage(
        organization_id=organization_id,
        recipient=to,
        subject=subject,
        body=body,
        dedupe_key=dedupe_key,
    )
    if dedupe_key is None:
        session.add(message)
        await session.flush()
        return message

    if (existing := await _find_by_dedupe_key(session, dedupe_key)) is not None:
        return existing
    # The read above cannot see a concurrent transaction's uncommitted row; the unique
    # constraint settles that race. The savepoint keeps the caller's transaction usable.
    try:
        async with session.begin_nested():
            session.add(message)
    except IntegrityError:
        if (existing := await _find_by_dedupe_key(session, dedupe_key)) is None:
            raise  # some other constraint (an unknown organization, say)
        return existing
    return message
