"""HTTP shapes of the jobs API (API.md, "Jobs")."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tandem.jobs.models import AttemptOutcome, JobStatus

MAX_PAYLOAD_KEYS = 1000


class JobIn(BaseModel):
    task: Annotated[str, Field(min_length=1, max_length=100)]
    payload: dict[str, Any] = Field(default_factory=dict)
    notify: bool = False
    max_attempts: Annotated[int, Field(ge=1, le=25)] = 3
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task: str
    status: JobStatus
    attempts: int
    max_attempts: int
    payload: dict[str, Any]
    result: Any | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int = Field(validation_alias="number")
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    outcome: AttemptOutcome
    worker: str


class JobDetailOut(JobOut):
    cancel_requested: bool
    attempt_history: list[AttemptOut]


class TaskOut(BaseModel):
    name: str
    description: str
