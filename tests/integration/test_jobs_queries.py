"""The jobs list reads along an index, on both databases: a page costs its own rows, not a
sort of every job the organization ever submitted (a benchmark's list fell from 1,290 to 528
requests/s once its organization had a few thousand jobs)."""

import uuid

import pytest
from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ClauseElement

from tandem.db import utcnow
from tandem.jobs.lifecycle import claim_update, due_jobs
from tandem.jobs.models import JobStatus
from tandem.jobs.service import _JOBS_PAGES, COUNTS_BY_STATUS

pytestmark = pytest.mark.anyio


async def plan_of(connection: AsyncConnection, statement: Executable) -> list[str]:
    """The plan of `statement` (its parameters bound): SQLite's steps, or PostgreSQL's lines.
    PostgreSQL is told not to prefer a sequential scan, which it would on these empty tables
    whatever the indexes."""
    assert isinstance(statement, ClauseElement)
    sql = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    if connection.dialect.name == "sqlite":
        plan = (await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()
        return [str(row[-1]) for row in plan]
    await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    return list((await connection.exec_driver_sql(f"EXPLAIN {sql}")).scalars().all())


async def test_a_page_of_an_organizations_jobs_needs_no_sort(
    db_connection: AsyncConnection,
) -> None:
    page = _JOBS_PAGES[False, False].rows
    values = {"organization_id": uuid.uuid4(), "page_limit": 20, "page_offset": 0}
    plan = await plan_of(db_connection, page.params(values))
    if db_connection.dialect.name == "sqlite":
        assert not [step for step in plan if "TEMP B-TREE" in step], plan
    else:
        assert not [line for line in plan if "Sort" in line], plan


async def test_a_claim_finds_the_jobs_it_chose_by_their_key(
    db_connection: AsyncConnection,
) -> None:
    """The claim's UPDATE names the jobs chosen in its transaction: it must reach them by
    their primary key. Given `status = 'pending'` as well, SQLite's planner walked the
    status index instead, every pending job, as soon as it named three: ~0.2 ms more for
    each job claimed under a backlog of a few thousand."""
    ids = [uuid.uuid4() for _ in range(20)]
    plan = await plan_of(db_connection, claim_update(ids, "worker", uuid.uuid4(), 30.0, utcnow()))
    if db_connection.dialect.name == "sqlite":
        assert len(plan) == 1, plan
        assert plan[0].endswith("INDEX sqlite_autoindex_jobs_1 (id=?)"), plan
    else:
        scans = [line for line in plan if "Index Scan" in line]
        assert scans, plan
        assert all("pk_jobs" in line for line in scans), plan


async def test_a_claim_reads_an_organizations_due_jobs_along_the_index(
    db_connection: AsyncConnection,
) -> None:
    """Each claim reads the oldest due jobs of each organization waiting: along the index
    on (status, organization_id, next_run_at), in its order. `organization_id IS NOT
    DISTINCT FROM $1` PostgreSQL cannot look up in an index: for an organization it believed
    rare, a claim read the whole jobs table (6 ms at 100,000 jobs) and sorted what it found."""
    plan = await plan_of(db_connection, due_jobs(uuid.uuid4(), utcnow(), 20))
    if db_connection.dialect.name == "sqlite":
        assert len(plan) == 1, plan
        index = "ix_jobs_status_organization_id_next_run_at (status=? AND organization_id"
        assert index in plan[0], plan
    else:
        assert not [line for line in plan if "Sort" in line], plan
        (condition,) = [line for line in plan if "Index Cond" in line]
        assert "organization_id" in condition, plan


async def test_the_consoles_counts_by_status_read_along_the_status_index(
    db_connection: AsyncConnection,
) -> None:
    """The jobs page counts the organization's jobs in each status. A GROUP BY over them read
    every job of the organization, row by row (SQLite, 1,000,000 jobs: 698 ms a page view); a
    count per status reads only the index entries of that status (58 ms)."""
    if db_connection.dialect.name != "sqlite":
        # Which of two indexes PostgreSQL takes for an empty table says nothing; with
        # statistics it took index-only scans of this one (benchmarks.md, tenth pass).
        pytest.skip("PostgreSQL's plan depends on its statistics")
    plan = await plan_of(db_connection, COUNTS_BY_STATUS.params(organization_id=uuid.uuid4()))
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert len(searches) == len(JobStatus), plan
    for step in searches:
        assert "INDEX ix_jobs_status_organization_id_next_run_at (status=? AND " in step, plan
