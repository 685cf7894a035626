"""Webhook subscriptions, and `emit`: an event becomes one delivery (and its job) per
subscription that asked for it, in the transaction of the change that caused it."""

import base64
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tandem.db import utcnow
from tandem.identity.principal import Principal
from tandem.jobs.dispatch import SessionDispatch
from tandem.jobs.registry import registry as task_registry
from tandem.jobs.service import JobControl, submit_job
from tandem.pagination import PageParams, paginate
from tandem.tenancy import owned
from tandem.webhooks.models import WebhookDelivery, WebhookSubscription
from tandem.webhooks.schemas import PING, Event, WebhookIn, WebhookUpdateIn

DELIVER_TASK = "webhook.deliver"
DELIVERY_ATTEMPTS = 6  # the job's budget: retried with the job system's backoff


_JOBS = JobControl(registry=task_registry, dispatch=SessionDispatch())


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def create_webhook(
    session: AsyncSession, principal: Principal, body: WebhookIn
) -> WebhookSubscription:
    webhook = WebhookSubscription(
        organization_id=principal.organization_id,
        url=str(body.url),
        events=[event.value for event in body.events],
        description=body.description,
        secret=new_secret(),
        is_active=True,
    )
    session.add(webhook)
    await session.flush()
    return webhook


async def list_webhooks(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[Sequence[WebhookSubscription], int]:
    query = select(WebhookSubscription).where(
        WebhookSubscription.organization_id == principal.organization_id
    )
    return await paginate(
        session, query.order_by(WebhookSubscription.created_at, WebhookSubscription.id), params
    )


async def get_webhook(
    session: AsyncSession, principal: Principal, webhook_id: uuid.UUID
) -> WebhookSubscription:
    return await owned(session, principal, WebhookSubscription, webhook_id, "Webhook")


async def update_webhook(
    session: AsyncSession, principal: Principal, webhook_id: uuid.UUID, body: WebhookUpdateIn
) -> WebhookSubscription:
    webhook = await get_webhook(session, principal, webhook_id)
    for field, value in body.changes().items():
        if field == "url":
            value = str(value)
        elif field == "events":
            value = [Event(event).value for event in value]
        setattr(webhook, field, value)
    await session.flush()
    return webhook


async def delete_webhook(
    session: AsyncSession, principal: Principal, webhook_id: uuid.UUID
) -> None:
    await session.delete(await get_webhook(session, principal, webhook_id))
    await session.flush()


async def list_deliveries(
    session: AsyncSession, principal: Principal, webhook_id: uuid.UUID, params: PageParams
) -> tuple[Sequence[WebhookDelivery], int]:
    webhook = await get_webhook(session, principal, webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == webhook.id)
    return await paginate(
        session,
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()),
        params,
    )


async def _deliver(
    session: AsyncSession, webhook: WebhookSubscription, event: str, data: dict[str, Any]
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        organization_id=webhook.organization_id,
        subscription_id=webhook.id,
        event=event,
        body={"type": event, "timestamp": utcnow().isoformat(), "data": data},
    )
    session.add(delivery)
    await session.flush()
    await submit_job(
        session,
        _JOBS,
        task=DELIVER_TASK,
        payload={"delivery_id": str(delivery.id)},
        organization_id=webhook.organization_id,
        max_attempts=DELIVERY_ATTEMPTS,
    )
    return delivery


async def send_test(
    session: AsyncSession, principal: Principal, webhook_id: uuid.UUID
) -> WebhookDelivery:
    """A `ping` to the subscription, active or not."""
    webhook = await get_webhook(session, principal, webhook_id)
    return await _deliver(session, webhook, PING, {"webhook_id": str(webhook.id)})


EventOf = tuple[uuid.UUID | None, Event, dict[str, Any]]  # (organization, event, data)


async def emit(
    session: AsyncSession, organization_id: uuid.UUID | None, event: Event, data: dict[str, Any]
) -> int:
    """One delivery for each active subscription of the organization that asked for `event`,
    in the caller's transaction (so an event leaves exactly when its change commits).
    Returns how many."""
    return await emit_all(session, [(organization_id, event, data)])


async def emit_all(session: AsyncSession, events: Sequence[EventOf]) -> int:
    """`emit` for several events with one query (the job executor's batched successes)."""
    organizations = {organization for organization, _, _ in events if organization is not None}
    if not organizations:
        return 0
    webhooks = (
        await session.scalars(
            select(WebhookSubscription)
            .where(
                WebhookSubscription.organization_id.in_(organizations),
                WebhookSubscription.is_active.is_(True),
            )
            .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
        )
    ).all()
    count = 0
    for organization, event, data in events:
        for webhook in webhooks:
            if webhook.organization_id == organization and event.value in webhook.events:
                await _deliver(session, webhook, event.value, data)
                count += 1
    return count


def job_event(
    job_id: uuid.UUID, organization_id: uuid.UUID | None, task: str, status: str
) -> list[EventOf]:
    """`job.succeeded` or `job.dead` for a finished job (none for webhook deliveries: their
    own jobs would announce themselves for ever)."""
    events = {"succeeded": Event.job_succeeded, "dead": Event.job_dead}
    if task == DELIVER_TASK or status not in events:
        return []
    data = {"job_id": str(job_id), "task": task, "status": str(status)}
    return [(organization_id, events[status], data)]


async def schedule_ended(
    session: AsyncSession,
    organization_id: uuid.UUID | None,
    schedule_id: uuid.UUID,
    status: str,
    error: str | None,
) -> None:
    """`schedule.generated` or `schedule.failed`, as the generation's end wrote `status`."""
    event = Event.schedule_generated if status == "generated" else Event.schedule_failed
    data = {"schedule_id": str(schedule_id), "status": str(status), "error": error}
    await emit(session, organization_id, event, data)
