"""swaps people can use: kinds, the counterpart's acceptance

Revision ID: 0011_swap_flow
Revises: 0010_sec_email_per_org
Create Date: 2026-11-30 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_swap_flow"
down_revision: str | None = "0010_sec_email_per_org"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("swaps") as batch:
        batch.add_column(
            sa.Column(
                "kind",
                sa.Enum("give_away", "exchange", name="swapkind", native_enum=False, length=20),
                server_default="give_away",
                nullable=False,
            )
        )
        batch.add_column(sa.Column("counter_assignment_id", sa.Uuid(), nullable=True))
        batch.add_column(
            sa.Column("needs_acceptance", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("accepted_by_id", sa.Uuid(), nullable=True))
        batch.create_index(
            batch.f("ix_swaps_counter_assignment_id"), ["counter_assignment_id"], unique=False
        )
        batch.create_foreign_key(
            batch.f("fk_swaps_counter_assignment_id_assignments"),
            "assignments",
            ["counter_assignment_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            batch.f("fk_swaps_accepted_by_id_users"),
            "users",
            ["accepted_by_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("swaps") as batch:
        batch.drop_constraint(batch.f("fk_swaps_accepted_by_id_users"), type_="foreignkey")
        batch.drop_constraint(
            batch.f("fk_swaps_counter_assignment_id_assignments"), type_="foreignkey"
        )
        batch.drop_index(batch.f("ix_swaps_counter_assignment_id"))
        batch.drop_column("accepted_by_id")
        batch.drop_column("accepted_at")
        batch.drop_column("needs_acceptance")
        batch.drop_column("counter_assignment_id")
        batch.drop_column("kind")
