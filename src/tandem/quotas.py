"""Quotas per organization on rows that requests create: a creation that would pass one is
refused with 409 naming the quota and what to do.

The services creating such rows call `enforce_quota` in their transaction, before adding
the row. It first locks the organization's row (`FOR NO KEY UPDATE` on PostgreSQL, which
does not block inserts referencing the organization), so that two requests racing for the
last unit are counted one after the other; SQLite has one writer at a time anyway.
"""

import uuid
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.errors import Conflict
from tandem.identity.models import Organization


async def enforce_quota(
    session: AsyncSession,
    model: Any,
    organization_id: uuid.UUID,
    *where: ColumnElement[bool],
    limit: int,
    what: str,
    remedy: str,
) -> None:
    """409 when the organization already has `limit` rows of `model` matching `where`."""
    await session.execute(
        select(Organization.id)
        .where(Organization.id == organization_id)
        .with_for_update(key_share=True)
    )
    count = await session.scalar(
        select(func.count())
        .select_from(model)
        .where(model.organization_id == organization_id, *where)
    )
    if count is not None and count >= limit:
        raise Conflict(
            f"Quota reached: this organization has {count} {what}, the most allowed is "
            f"{limit}; {remedy}"
        )
