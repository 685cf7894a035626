"""The `webhook.deliver` task: one delivery, retried by the job system until it succeeds or
its attempts run out (then the delivery is `failed`)."""

import time
import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import transaction_scope, utcnow
from tandem.jobs.registry import TaskContext, task
from tandem.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tandem.webhooks.sending import Outcome, encode, send
from tandem.webhooks.service import DELIVER_TASK


class DeliverPayload(BaseModel):
    delivery_id: uuid.UUID


class DeliveryFailed(Exception):
    pass


async def _give_up(
    session: AsyncSession, job_id: uuid.UUID, payload: dict[str, Any], error: str
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == uuid.UUID(payload["delivery_id"]),
            WebhookDelivery.status == DeliveryStatus.pending,
        )
        .values(status=DeliveryStatus.failed, updated_at=utcnow())
    )


@task(
    DELIVER_TASK,
    description="Delivers one webhook event to one subscription",
    payload_model=DeliverPayload,
    public=False,
    on_give_up=_give_up,
)
async def deliver(context: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    delivery_id = uuid.UUID(payload["delivery_id"])
    async with context.sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None:  # deleted with its webhook
            return {"skipped": "the webhook was deleted"}
        webhook = await session.get_one(WebhookSubscription, delivery.subscription_id)
        if delivery.status is not DeliveryStatus.pending:
            return {"skipped": f"the delivery is {delivery.status.value}"}
        url, secret, body = webhook.url, webhook.secret, encode(delivery.body)
    settings = context.settings
    outcome = await send(
        url,
        secret,
        f"msg_{delivery_id.hex}",  # the same for every attempt: receivers deduplicate on it
        body,
        timestamp=int(time.time()),
        deadline_seconds=settings.webhook_timeout_seconds,
        allow_private=settings.webhook_allow_private,
    )
    await _record(context, delivery_id, outcome)
    if not outcome.ok:
        raise DeliveryFailed(outcome.error)
    return {"status_code": outcome.status_code}


async def _record(context: TaskContext, delivery_id: uuid.UUID, outcome: Outcome) -> None:
    async with context.sessionmaker() as session, transaction_scope(session):
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.pending,
            )
            .values(
                attempts=WebhookDelivery.attempts + 1,
                status=DeliveryStatus.succeeded if outcome.ok else DeliveryStatus.pending,
                status_code=outcome.status_code,
                error=outcome.error,
                response_excerpt=outcome.excerpt,
                attempted_at=utcnow(),
                updated_at=utcnow(),
            )
        )
