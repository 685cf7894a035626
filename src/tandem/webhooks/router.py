"""HTTP for webhooks: /api/v1/webhooks (scope webhooks:admin)."""

import uuid
from typing import Annotated

from fastapi import Depends, status

from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.scopes import Scope
from tandem.pagination import Page, PageParamsDep
from tandem.routing import Router
from tandem.webhooks import service
from tandem.webhooks.schemas import (
    DeliveryOut,
    WebhookCreatedOut,
    WebhookIn,
    WebhookOut,
    WebhookUpdateIn,
)

router = Router(
    route_class=ApiRoute,
    prefix="/api/v1/webhooks",
    tags=["webhooks"],
    responses=error_responses(401, 403),
)
WebhooksAdmin = Annotated[Principal, Depends(require_scopes(Scope.webhooks_admin))]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookIn, principal: WebhooksAdmin, session: SessionDep
) -> WebhookCreatedOut:
    return WebhookCreatedOut.model_validate(await service.create_webhook(session, principal, body))


@router.get("")
async def list_webhooks(
    principal: WebhooksAdmin, session: SessionDep, page: PageParamsDep
) -> Page[WebhookOut]:
    items, count = await service.list_webhooks(session, principal, page)
    return Page(items=[WebhookOut.model_validate(w) for w in items], count=count)


@router.get("/{webhook_id}", responses=error_responses(404))
async def get_webhook(
    webhook_id: uuid.UUID, principal: WebhooksAdmin, session: SessionDep
) -> WebhookOut:
    return WebhookOut.model_validate(await service.get_webhook(session, principal, webhook_id))


@router.patch("/{webhook_id}", responses=error_responses(404))
async def update_webhook(
    webhook_id: uuid.UUID, body: WebhookUpdateIn, principal: WebhooksAdmin, session: SessionDep
) -> WebhookOut:
    webhook = await service.update_webhook(session, principal, webhook_id, body)
    return WebhookOut.model_validate(webhook)


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
async def delete_webhook(
    webhook_id: uuid.UUID, principal: WebhooksAdmin, session: SessionDep
) -> None:
    await service.delete_webhook(session, principal, webhook_id)


@router.get("/{webhook_id}/deliveries", responses=error_responses(404))
async def list_deliveries(
    webhook_id: uuid.UUID, principal: WebhooksAdmin, session: SessionDep, page: PageParamsDep
) -> Page[DeliveryOut]:
    items, count = await service.list_deliveries(session, principal, webhook_id, page)
    return Page(items=[DeliveryOut.model_validate(d) for d in items], count=count)


@router.post(
    "/{webhook_id}/test", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(404)
)
async def send_test(
    webhook_id: uuid.UUID, principal: WebhooksAdmin, session: SessionDep
) -> DeliveryOut:
    return DeliveryOut.model_validate(await service.send_test(session, principal, webhook_id))
