"""Identity data: organizations (tenants) and the people and keys inside them."""

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, TimestampMixin


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
