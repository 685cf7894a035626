"""The one list shape: `{"items": [...], "count": <total matching>}` with limit/offset."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Integer, Row, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import ReadConnection

ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")
# What Core returns for a select of plain columns: rows of any number of columns, any types.
ColumnsSelect = Select[*tuple[Any, ...]]
ColumnsRow = Row[*tuple[Any, ...]]


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    count: int


@dataclass(frozen=True)
class PageParams:
    limit: int = 50
    offset: int = 0


# Databases take a 64-bit OFFSET at most; nobody pages past two billion rows.
MAX_OFFSET = 2**31 - 1


# async: FastAPI runs a plain `def` dependency in a worker thread, a hand-over per request.
async def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page (1-200)")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


async def paginate(
    session: AsyncSession, query: Select[RowT], params: PageParams
) -> tuple[Sequence[RowT], int]:
    """One page of `query` (which must be ordered) and the total count of its rows, in one
    statement (the count alone only for a page past the end: see `columns_page`)."""
    count = _count_of(query)
    page = query.add_columns(count.scalar_subquery()).limit(params.limit).offset(params.offset)
    rows = (await session.execute(page)).all()
    if rows:
        return [row[0] for row in rows], rows[0][1]
    if params.offset == 0:
        return [], 0
    return [], (await session.execute(count)).scalar_one()


def _count_of(query: ColumnsSelect) -> Select[int]:
    return select(func.count()).select_from(query.order_by(None).subquery())


# --- pages of plain columns, for the hot read routes ------------------------------------------


@dataclass(frozen=True)
class ColumnsPage:
    """A page query of plain columns, built once at import (`columns_page`). `rows` reads one
    page (bound parameters `page_limit`, `page_offset`) and carries the total count of the
    matching rows as its last column, so that a page and its count are one round trip;
    `count` reads the total alone, for a page past the end (no row to carry it)."""

    rows: ColumnsSelect
    count: Select[int]


def columns_page(query: ColumnsSelect) -> ColumnsPage:
    """The `ColumnsPage` of `query`, an ordered select of columns (its other parameters bound
    by name with `bindparam`). The count is an uncorrelated scalar subquery: PostgreSQL and
    SQLite evaluate it once per statement, not once per row."""
    count = _count_of(query)
    rows = (
        query.add_columns(count.scalar_subquery().label("page_total"))
        .limit(bindparam("page_limit", type_=Integer))
        .offset(bindparam("page_offset", type_=Integer))
    )
    return ColumnsPage(rows=rows, count=count)


async def paginate_columns(
    connection: ReadConnection,
    page: ColumnsPage,
    params: PageParams,
    values: Mapping[str, Any],
) -> tuple[Sequence[ColumnsRow], int]:
    """One page of `page` with its parameters `values`, as rows (each also carrying the total
    as `page_total`), and the total count."""
    rows = (
        await connection.execute(
            page.rows, {**values, "page_limit": params.limit, "page_offset": params.offset}
        )
    ).all()
    if rows:
        total: int = rows[0].page_total
        return rows, total
    if params.offset == 0:
        return rows, 0
    return rows, (await connection.execute(page.count, dict(values))).scalar_one()
