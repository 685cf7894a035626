"""call periods, moonlighting, and the generator's call settings

Revision ID: 0015_call
Revises: 0014_digest_recipients
Create Date: 2026-11-30 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_call"
down_revision: str | None = "0014_digest_recipients"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _common() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("in_house", "home", name="callkind", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("worked_hours", sa.Float(), nullable=True),
        *_common(),
        sa.CheckConstraint('"end" > start', name=op.f("ck_calls_period")),
        sa.CheckConstraint(
            "worked_hours IS NULL OR worked_hours >= 0", name=op.f("ck_calls_worked_hours")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_calls_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_calls_person_id_people"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_calls_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index("ix_calls_organization_id_start", "calls", ["organization_id", "start"])
    op.create_index(op.f("ix_calls_person_id"), "calls", ["person_id"])
    op.create_index(op.f("ix_calls_schedule_id"), "calls", ["schedule_id"])
    op.create_table(
        "moonlighting",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("internal", "external", name="moonlightingkind", native_enum=False, length=20),
            nullable=False,
        ),
        *_common(),
        sa.CheckConstraint("hours > 0 AND hours <= 168", name=op.f("ck_moonlighting_hours")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_moonlighting_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_moonlighting_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moonlighting")),
        sa.UniqueConstraint(
            "person_id",
            "week_start",
            "kind",
            name=op.f("uq_moonlighting_person_id_week_start_kind"),
        ),
    )
    op.create_index(op.f("ix_moonlighting_organization_id"), "moonlighting", ["organization_id"])
    op.create_index(op.f("ix_moonlighting_person_id"), "moonlighting", ["person_id"])
    with op.batch_alter_table("rotations") as batch:
        batch.add_column(
            sa.Column("no_call_before", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(
            sa.Column("call_per_night", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("call_start_hour", sa.Integer(), server_default="19", nullable=False)
        )
        batch.add_column(sa.Column("call_hours", sa.Float(), server_default="12", nullable=False))
        batch.add_column(sa.Column("holidays", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("holidays")
        batch.drop_column("call_hours")
        batch.drop_column("call_start_hour")
        batch.drop_column("call_per_night")
    with op.batch_alter_table("rotations") as batch:
        batch.drop_column("no_call_before")
    op.drop_table("moonlighting")
    op.drop_table("calls")
