"""Identity data: organizations (tenants), users, projects, API keys and login sessions."""

import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tandem.db import Base, IdMixin, TimestampMixin

ROLE_LENGTH = 20


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    # Unique per organization, so creating a user never reveals another tenant's accounts.
    __table_args__ = (UniqueConstraint("organization_id", "email"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # Stored lower-cased, so the unique constraint is case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(320), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(ROLE_LENGTH))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None]
    # Registered itself while TANDEM_EMAIL_VERIFICATION=required and has not yet followed the
    # link mailed to it: such an account may only read /users/me until it does.
    verification_pending: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )

    organization: Mapped[Organization] = relationship(lazy="raise")


class Project(IdMixin, TimestampMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("organization_id", "slug"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(220))
    description: Mapped[str | None] = mapped_column(Text)


class ApiKey(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_keys"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the whole key: keys are long random strings, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class LoginSession(IdMixin, TimestampMixin, Base):
    """One login: the family of refresh tokens rotated from it, and its access tokens (`sid`)."""

    __tablename__ = "login_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON)
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(50))


class RefreshToken(IdMixin, TimestampMixin, Base):
    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("login_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    # Set when the token is exchanged; presenting it again is reuse.
    used_at: Mapped[datetime | None]


class OneTimeToken(IdMixin, TimestampMixin, Base):
    """A single-use, expiring link sent by e-mail: an invitation, an address to verify, a
    password to reset. Stored as a SHA-256 hash; used once (`used_at`), then worthless."""

    __tablename__ = "one_time_tokens"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    # The account it is about (None for an invitation: the account does not exist yet).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str | None] = mapped_column(String(ROLE_LENGTH))  # an invitation's role
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
