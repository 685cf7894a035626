"""The migrations and the models describe the same schema, on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tandem.migrations import current_revision, head_revision, is_up_to_date, upgrade_to_head
from tandem.models import Base

pytestmark = pytest.mark.anyio


def schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(db_connection: AsyncConnection) -> None:
    assert await db_connection.run_sync(schema_differences) == []


async def test_test_database_is_at_head(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head_revision()
    assert await is_up_to_date(engine)


async def test_upgrading_again_is_a_no_op(engine: AsyncEngine) -> None:
    await upgrade_to_head(engine)
    assert await current_revision(engine) == head_revision()
