"""A FunctionModel standing in for the LLM behind the content-writer agent, for the content
pipeline's integration tests and benchmark.

The model reads the parameters the agent sent (the prompt envelope), so its drafts show
which variant they are and what feedback they answer; it counts calls and the most calls
in flight at once, and can take its time or fail.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tandem.agents.envelope import parse_prompt
from tandem.agents.providers import AgentModels


def sent_parameters(messages: list[ModelMessage]) -> dict[str, Any]:
    request = messages[0]
    assert isinstance(request, ModelRequest)
    prompt = next(part.content for part in request.parts if isinstance(part, UserPromptPart))
    assert isinstance(prompt, str)
    envelope = parse_prompt(prompt)
    assert envelope is not None
    assert envelope.task == "content-writer"
    return envelope.parameters


def expected_draft(variant: int, topics: list[str], feedback: str | None = None) -> str:
    post = f"Post {variant + 1} on {', '.join(topics)}"
    return f"{post}, revised: {feedback}" if feedback else post


@dataclass
class ScriptedWriter:
    delay_seconds: float = 0.0
    fail: bool = False
    failures_left: int = 0  # the next this many calls fail, then the model recovers
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def reply(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        parameters = sent_parameters(messages)
        self.calls += 1
        self.seen.append(parameters)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            if self.fail or self.failures_left > 0:
                self.failures_left -= 1
                raise ModelHTTPError(503, "scripted-writer", body={"message": "overloaded"})
        finally:
            self.in_flight -= 1
        draft = expected_draft(
            parameters.get("variant", 0), parameters["topics"], parameters.get("feedback")
        )
        return ModelResponse(parts=[TextPart(draft)])

    @property
    def model(self) -> Model:
        return FunctionModel(self.reply, model_name="scripted-writer")


def use_writer(monkeypatch: pytest.MonkeyPatch, writer: ScriptedWriter) -> None:
    """Every process-wide `AgentModels` answers the content-writer with `writer`'s model."""
    model = writer.model
    original = AgentModels.for_agent

    def for_agent(self: AgentModels, agent_id: str) -> Model:
        return model if agent_id == "content-writer" else original(self, agent_id)

    monkeypatch.setattr(AgentModels, "for_agent", for_agent)
