"""Webhook subscriptions and their deliveries (one row per event and subscription)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db import Base, IdMixin, TimestampMixin, string_enum


class WebhookSubscription(IdMixin, TimestampMixin, Base):
    __tablename__ = "webhook_subscriptions"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))  # whsec_<base64>, signs every delivery
    is_active: Mapped[bool] = mapped_column(default=True)


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its first attempt or for a retry
    succeeded = "succeeded"  # answered 2xx
    failed = "failed"  # its job gave up


class WebhookDelivery(IdMixin, TimestampMixin, Base):
    __tablename__ = "webhook_deliveries"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(50))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # {type, timestamp, data}, as sent
    status: Mapped[DeliveryStatus] = mapped_column(
        string_enum(DeliveryStatus, length=16, check_name="status"),
        default=DeliveryStatus.pending,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    status_code: Mapped[int | None]  # of the last attempt that got an answer
    error: Mapped[str | None] = mapped_column(Text)  # of the last attempt, if it failed
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    attempted_at: Mapped[datetime | None]
