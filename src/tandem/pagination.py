"""The one list shape: `{"items": [...], "count": <total matching>}` with limit/offset."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")


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
    """One page of `query` (which must be ordered) and the total count of its rows."""
    total_query: Select[Any] = select(func.count()).select_from(query.order_by(None).subquery())
    total = (await session.execute(total_query)).scalar_one()
    rows = (await session.scalars(query.limit(params.limit).offset(params.offset))).all()
    return rows, total
