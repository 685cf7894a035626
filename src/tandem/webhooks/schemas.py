"""HTTP shapes of webhooks."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

from tandem.patch import Patch
from tandem.webhooks.models import DeliveryStatus


class Event(StrEnum):
    review_pending = "review.pending"
    review_decided = "review.decided"
    job_succeeded = "job.succeeded"
    job_dead = "job.dead"
    schedule_generated = "schedule.generated"
    schedule_failed = "schedule.failed"
    swap_requested = "swap.requested"


PING = "ping"  # what POST /{id}/test sends; nobody subscribes to it

WebhookUrl = Annotated[
    AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])
]
Events = Annotated[list[Event], Field(min_length=1)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    events: Events
    description: Annotated[str, Field(max_length=500)] | None = None


class WebhookUpdateIn(Patch):
    not_null = frozenset({"url", "events", "is_active"})

    url: WebhookUrl | None = None
    events: Events | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    is_active: bool | None = None


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    is_active: bool
    created_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str  # shown only once, here


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event: str
    status: DeliveryStatus
    attempts: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    created_at: datetime
    attempted_at: datetime | None
