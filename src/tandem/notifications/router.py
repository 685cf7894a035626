"""HTTP for an organization's notification settings: who gets its review digests."""

import uuid
from typing import Annotated

from fastapi import Depends
from pydantic import BaseModel, Field

from tandem.db import SessionDep
from tandem.errors import error_responses
from tandem.identity.principal import ApiRoute, Principal, require_scopes
from tandem.identity.schemas import UserOut
from tandem.identity.scopes import Scope
from tandem.notifications import recipients
from tandem.routing import Router

router = Router(
    route_class=ApiRoute,
    prefix="/api/v1/organizations/current",
    tags=["organizations"],
    responses=error_responses(401, 403),
)

UsersAdmin = Annotated[Principal, Depends(require_scopes(Scope.users_admin))]


class ReviewRecipientsIn(BaseModel):
    user_ids: list[uuid.UUID] = Field(
        max_length=recipients.MAX_RECIPIENTS,
        description="Users (active, holding review:write) who get the review digests; "
        "empty: everyone who may decide",
    )


class ReviewRecipientsOut(BaseModel):
    user_ids: list[uuid.UUID] = Field(
        description="The chosen list, by e-mail address; empty: none chosen"
    )
    digest_to: list[UserOut] = Field(description="Who gets the digest now")


async def _recipients_out(session: SessionDep, principal: Principal) -> ReviewRecipientsOut:
    organization_id = principal.organization_id
    return ReviewRecipientsOut(
        user_ids=await recipients.chosen(session, organization_id),
        digest_to=[
            UserOut.model_validate(user)
            for user in await recipients.digest_recipients(session, organization_id)
        ],
    )


@router.get("/review-recipients")
async def get_review_recipients(principal: UsersAdmin, session: SessionDep) -> ReviewRecipientsOut:
    return await _recipients_out(session, principal)


@router.put("/review-recipients", responses=error_responses(409))
async def put_review_recipients(
    body: ReviewRecipientsIn, principal: UsersAdmin, session: SessionDep
) -> ReviewRecipientsOut:
    await recipients.choose(session, principal, body.user_ids)
    return await _recipients_out(session, principal)
