"""HTTP shapes of the agents API (API.md, "Agents")."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator

from tandem.agents.models import AgentRun, RunStatus


class AgentOut(BaseModel):
    agent_id: str
    name: str
    description: str


class RunIn(BaseModel):
    agent_id: Annotated[str, Field(min_length=1, max_length=100)]
    input_text: Annotated[str, Field(min_length=1)]
    parameters: dict[str, Any] = Field(default_factory=dict)
    background: bool = False
    stream: bool = Field(
        default=False,
        description="Answer text/event-stream: the output as the model writes it, then the run",
    )
    project_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _stream_or_background(self) -> "RunIn":
        if self.stream and self.background:
            raise ValueError("stream and background exclude each other: choose one")
        return self

    @field_validator("input_text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input_text is blank: give the text the agent should work on")
        return value


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    requests: int


class RunOut(BaseModel):
    """A run as stored; finished runs carry their output (or error) and usage."""

    run_id: uuid.UUID
    agent_id: str
    status: RunStatus
    output: str | None
    error: str | None
    token_usage: int = Field(description="Total tokens: input plus output")
    usage: Usage
    model: str | None
    job_id: uuid.UUID | None
    project_id: uuid.UUID | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: AgentRun) -> "RunOut":
        return cls(
            run_id=run.id,
            agent_id=run.agent_id,
            status=run.status,
            output=run.output,
            error=run.error,
            token_usage=run.input_tokens + run.output_tokens,
            usage=Usage(
                input_tokens=run.input_tokens,
                output_tokens=run.output_tokens,
                requests=run.requests,
            ),
            model=run.model,
            job_id=run.job_id,
            project_id=run.project_id,
            created_at=run.created_at,
            finished_at=run.finished_at,
        )


class RunAcceptedOut(BaseModel):
    """A run that goes on as a job: poll GET /api/v1/agents/runs/{run_id}."""

    run_id: uuid.UUID
    agent_id: str
    status: RunStatus
    job_id: uuid.UUID | None
