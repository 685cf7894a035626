"""Tenancy: every row a principal reaches by id belongs to its organization, or is not found.

Another tenant's row is reported exactly like a missing one (404 with the same text), so ids
reveal nothing across organizations.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import Result, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement

from tandem.db import ReadConnection
from tandem.errors import NotFound
from tandem.identity.principal import Principal
from tandem.pagination import ColumnsRow, ColumnsSelect


class Tenanted(Protocol):
    @property
    def organization_id(self) -> uuid.UUID | None: ...


TenantedT = TypeVar("TenantedT", bound=Tenanted)


def _not_found(what: str, object_id: uuid.UUID) -> NotFound:
    return NotFound(f"{what} {object_id} not found")


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
        raise _not_found(what, object_id)
    return row


@dataclass(frozen=True)
class OwnedColumns:
    """Plain columns of one row by id, within an organization: built once at import by
    `owned_columns`, read by `owned_row`."""

    what: str
    statement: ColumnsSelect


def owned_columns(
    model: type[DeclarativeBase], what: str, *columns: ColumnElement[Any] | QueryableAttribute[Any]
) -> OwnedColumns:
    """Reads `columns` of the `model` row with a given id, if it is of a given organization
    (the filter is part of the statement: no caller can forget it)."""
    table = model.__table__
    statement = select(*columns).where(
        table.c.id == bindparam("object_id"),
        table.c.organization_id == bindparam("organization_id"),
    )
    return OwnedColumns(what=what, statement=statement)


async def owned_row(
    connection: ReadConnection,
    principal: Principal,
    columns: OwnedColumns,
    object_id: uuid.UUID,
) -> ColumnsRow:
    """`owned` as one row of plain columns, read with Core on the session's connection (no ORM
    object, no identity map, no flush): the same 404, with the same text, for a row that does
    not exist or belongs to another organization."""
    row = (await _execute_owned(connection, principal, columns, object_id)).one_or_none()
    if row is None:
        raise _not_found(columns.what, object_id)
    return row


async def owned_rows(
    connection: ReadConnection,
    principal: Principal,
    columns: OwnedColumns,
    object_id: uuid.UUID,
) -> Sequence[ColumnsRow]:
    """`owned_row` for a statement that outer-joins the row to its children: one row per
    child, at least one; the same 404 when there is none."""
    rows = (await _execute_owned(connection, principal, columns, object_id)).all()
    if not rows:
        raise _not_found(columns.what, object_id)
    return rows


async def _execute_owned(
    connection: ReadConnection,
    principal: Principal,
    columns: OwnedColumns,
    object_id: uuid.UUID,
) -> Result[*tuple[Any, ...]]:
    return await connection.execute(
        columns.statement, {"object_id": object_id, "organization_id": principal.organization_id}
    )
