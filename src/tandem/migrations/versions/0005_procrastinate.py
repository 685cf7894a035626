"""procrastinate schema (PostgreSQL only)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 05:10:00.000000

procrastinate's own schema (its tables, types, functions and triggers) for `tandem worker`,
installed in a schema of its own, `procrastinate`, so that it never mixes with ours: the
comparison of models and migrations only looks at the default schema. Every procrastinate
function gets `search_path = procrastinate`, so a caller on any search path (our deferral runs
on the request's connection) reaches procrastinate's tables. SQLite has no procrastinate:
this revision does nothing there.

The SQL is procrastinate's `schema.sql` as installed when this migration runs; an upgrade of
procrastinate that changes its schema needs a migration of ours applying its migration files
with `SET search_path TO procrastinate`.
"""

from collections.abc import Sequence
from importlib import resources

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "procrastinate"

_PIN_SEARCH_PATH = """
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'procrastinate'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = procrastinate, pg_catalog', fn);
    END LOOP;
END;
$$;
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema_sql = (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8")
    bind.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
    # SET LOCAL: only for this (the migration's) transaction.
    bind.exec_driver_sql(f"SET LOCAL search_path TO {SCHEMA}, pg_catalog")
    # The driver is handed an (empty) parameter list, so a literal % is written %%.
    bind.exec_driver_sql(schema_sql.replace("%", "%%"))
    bind.exec_driver_sql(_PIN_SEARCH_PATH.replace("%", "%%"))
    bind.exec_driver_sql("SET LOCAL search_path TO DEFAULT")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql(f"DROP SCHEMA {SCHEMA} CASCADE")
