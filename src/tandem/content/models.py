"""Published content: one row per approved draft."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, TimestampMixin, string_enum


class ContentStatus(StrEnum):
    published = "published"


class ContentItem(IdMixin, TimestampMixin, Base):
    __tablename__ = "content_items"
    __table_args__ = (
        # Publishing a thread twice cannot duplicate its posts.
        UniqueConstraint("thread_id", "position"),
        Index(
            "ix_content_items_organization_id_status_published_at",
            "organization_id",
            "status",
            "published_at",
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL")
    )
    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("review_threads.id", ondelete="CASCADE")
    )
    revision: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # the draft's index in its revision
    platform: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[ContentStatus] = mapped_column(
        string_enum(ContentStatus, check_name="status"), default=ContentStatus.published
    )
    published_at: Mapped[datetime]
    published_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
