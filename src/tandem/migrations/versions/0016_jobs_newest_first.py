"""an organization's jobs, newest first, along one index

Revision ID: 0016_jobs_newest_first
Revises: 0015_call
Create Date: 2026-11-30 22:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_jobs_newest_first"
down_revision: str | None = "0015_call"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Leads with organization_id, so it also serves what the index it replaces served.
    op.create_index(
        "ix_jobs_organization_id_created_at",
        "jobs",
        ["organization_id", "created_at", "id"],
    )
    op.drop_index("ix_jobs_organization_id", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_organization_id", "jobs", ["organization_id"])
    op.drop_index("ix_jobs_organization_id_created_at", table_name="jobs")
