"""E-mail unique per organization (issue 13: POST /users must not reveal other tenants' users).

Revision ID: 0010_sec_email_per_org
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_sec_email_per_org"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_email"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_users_organization_id_email"), ["organization_id", "email"]
        )
        batch_op.create_index(batch_op.f("ix_users_email"), ["email"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_email"))
        batch_op.drop_constraint(batch_op.f("uq_users_organization_id_email"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_users_email"), ["email"])
