"""HTTP shapes of the content pipeline (API.md, "Review and content")."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from tandem.content.models import ContentStatus
from tandem.settings import MAX_DRAFTS_PER_REQUEST


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL characters: refuse them here (422), not there (500)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(no_nul)
Topic = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
]
Platform = Literal["linkedin", "twitter", "instagram", "blog"]
Tone = Literal["professional", "casual", "educational", "promotional"]
MAX_DRAFTS = MAX_DRAFTS_PER_REQUEST


class ContentRequest(BaseModel):
    """What to write; stored with the thread, so a retried job writes the same thing."""

    topics: list[Topic] = Field(min_length=1, max_length=20, description="What the posts are about")
    platform: Platform
    count: int = Field(default=1, ge=1, le=MAX_DRAFTS, description="How many drafts to write")
    tone: Tone = "professional"
    brief: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000), NoNul] | None
    ) = None


class ContentCreateIn(ContentRequest):
    model_config = ConfigDict(extra="forbid")

    project_id: uuid.UUID | None = None


class ContentAcceptedOut(BaseModel):
    thread_id: uuid.UUID
    status: Literal["generating"] = "generating"
    request_type: Literal["text"] = "text"
    job_id: uuid.UUID


class ContentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    thread_id: uuid.UUID
    project_id: uuid.UUID | None
    revision: int
    position: int
    platform: str
    body: str
    status: ContentStatus
    published_at: datetime
    published_by_id: uuid.UUID | None
    created_at: datetime
