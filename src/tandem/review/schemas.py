"""HTTP shapes of the review queue (API.md, "Review and content")."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tandem.content.schemas import NoNul
from tandem.review.states import Decision, ThreadStatus


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thread_id: uuid.UUID
    decision: Decision
    feedback: Annotated[str, Field(max_length=4000), NoNul] = ""
    revision: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="The revision the reviewer saw. If the thread has been revised since "
        "(another reviewer sent it back and new drafts are ready), the answer is 409 instead "
        "of a decision on drafts nobody here has read.",
    )


class ResumeOut(BaseModel):
    thread_id: uuid.UUID
    status: ThreadStatus
    message: str
    final_content: list[Any] | None


class PendingOut(BaseModel):
    thread_id: uuid.UUID
    kind: str
    platform: str | None
    content_count: int
    edit_count: int
    created_at: datetime
    preview: str


class DecidedBy(BaseModel):
    kind: str = Field(description="user or api_key")
    id: uuid.UUID = Field(description="The user's id, or the API key's")
    user_id: uuid.UUID | None = Field(description="The user, or the user who created the key")


class DecisionOut(BaseModel):
    revision: int
    decision: Decision
    feedback: str | None
    decided_by: DecidedBy
    decided_at: datetime


class FeedbackOut(BaseModel):
    revision: int
    decision: Decision
    feedback: str
    user_id: uuid.UUID | None
    created_at: datetime


class RevisionOut(BaseModel):
    revision: int
    drafts: list[Any]
    created_at: datetime


class ThreadOut(BaseModel):
    thread_id: uuid.UUID
    kind: str
    status: ThreadStatus
    platform: str | None
    project_id: uuid.UUID | None
    revision: int
    edit_count: int
    drafts: list[Any] = Field(description="The current revision's drafts")
    request: dict[str, Any] = Field(description="What the thread was opened with")
    final_content: list[Any] | None
    error: str | None
    job_id: uuid.UUID | None
    feedback: list[FeedbackOut]
    decisions: list[DecisionOut]
    revisions: list[RevisionOut]
    created_at: datetime
    updated_at: datetime
