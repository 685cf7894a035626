"""Tenancy: every row a principal reaches by id belongs to its organization, or is not found.

Another tenant's row is reported exactly like a missing one (404 with the same text), so ids
reveal nothing across organizations.
"""

import uuid
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from tandem.errors import NotFound
from tandem.identity.principal import Principal


class Tenanted(Protocol):
    @property
    def organization_id(self) -> uuid.UUID | None: ...


TenantedT = TypeVar("TenantedT", bound=Tenanted)


async def owned(
    session: AsyncSession,
    principal: Principal,
    model: type[TenantedT],
    object_id: uuid.UUID,
    what: str,
) -> TenantedT:
    """The `model` row `object_id` of the principal's organization; NotFound("{what} {id} not
    found") when it does not exist or belongs to another organization."""
    row = await session.get(model, object_id)
    if row is None or row.organization_id != principal.organization_id:
        raise NotFound(f"{what} {object_id} not found")
    return row
