"""Single-use, expiring links sent by e-mail: invitations, address verification, password reset.

The token itself exists only in the e-mail; the database keeps its SHA-256 hash. Using one is
a guarded update (unused and unexpired), so two requests presenting it at once cannot both
succeed.
"""

import uuid
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import compare_and_set, utcnow
from tandem.errors import Invalid
from tandem.identity.models import OneTimeToken
from tandem.identity.security import new_refresh_token, sha256_hex

INVALID_LINK = "This link is invalid, has expired or was already used; ask for a new one"


class Purpose(StrEnum):
    invitation = "invitation"
    verify_email = "verify_email"
    password_reset = "password_reset"


async def issue(
    session: AsyncSession,
    purpose: Purpose,
    *,
    organization_id: uuid.UUID,
    email: str,
    ttl: timedelta,
    user_id: uuid.UUID | None = None,
    role: str | None = None,
    created_by_id: uuid.UUID | None = None,
) -> tuple[OneTimeToken, str]:
    """The stored row and the token to put in the link (nowhere else after this call)."""
    token = new_refresh_token()
    row = OneTimeToken(
        organization_id=organization_id,
        purpose=purpose.value,
        token_hash=sha256_hex(token),
        email=email,
        user_id=user_id,
        role=role,
        created_by_id=created_by_id,
        expires_at=utcnow() + ttl,
    )
    session.add(row)
    await session.flush()
    return row, token


async def use(session: AsyncSession, purpose: Purpose, token: str) -> OneTimeToken:
    """Marks the token used and returns it, or 422 naming `token` (unknown, expired, used)."""
    now = utcnow()
    row = await session.scalar(
        select(OneTimeToken).where(
            OneTimeToken.token_hash == sha256_hex(token), OneTimeToken.purpose == purpose.value
        )
    )
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise Invalid(INVALID_LINK, loc=("body", "token"))
    claimed = await compare_and_set(
        session,
        update(OneTimeToken)
        .where(OneTimeToken.id == row.id, OneTimeToken.used_at.is_(None))
        .values(used_at=now),
    )
    if not claimed:
        raise Invalid(INVALID_LINK, loc=("body", "token"))
    return row


async def retire(session: AsyncSession, purpose: Purpose, user_id: uuid.UUID) -> None:
    """Every unused token of this purpose for the user stops working (one has just been used)."""
    await session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose.value,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )


def expiry(hours: float) -> timedelta:
    return timedelta(hours=hours)
