"""The jobs list reads along an index, on both databases: a page costs its own rows, not a
sort of every job the organization ever submitted (a benchmark's list fell from 1,290 to 528
requests/s once its organization had a few thousand jobs)."""

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from tandem.jobs.service import _JOBS_PAGES

pytestmark = pytest.mark.anyio


async def test_a_page_of_an_organizations_jobs_needs_no_sort(
    db_connection: AsyncConnection,
) -> None:
    page = _JOBS_PAGES[False, False].rows
    values = {"organization_id": uuid.uuid4(), "page_limit": 20, "page_offset": 0}
    statement = page.params(values).compile(
        dialect=db_connection.dialect, compile_kwargs={"literal_binds": True}
    )
    if db_connection.dialect.name == "sqlite":
        plan = (await db_connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")).all()
        steps = [str(row[-1]) for row in plan]
        assert not [step for step in steps if "TEMP B-TREE" in step], steps
    else:
        # An empty table: tell the planner not to prefer a sequential scan and sort anyway.
        await db_connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = (await db_connection.exec_driver_sql(f"EXPLAIN {statement}")).scalars().all()
        assert not [line for line in plan if "Sort" in line], plan
