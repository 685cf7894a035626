"""What an agent is: an id, a description, a parameters model and a pydantic-ai `Agent`."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_ai import Agent, AgentRunResult
from pydantic_ai.models import Model

from tandem.agents.envelope import render_prompt
from tandem.errors import Invalid

ParamsT = TypeVar("ParamsT", bound=BaseModel)
OutT = TypeVar("OutT")


@dataclass(frozen=True)
class AgentResult:
    """One finished run: the output as text and what the model reported using for it."""

    output: str
    input_tokens: int
    output_tokens: int
    requests: int
    model_name: str


class AgentFailed(Exception):
    """The model could not produce a usable answer; `message` says why in one line."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, kw_only=True)
class AgentSpec(Generic[ParamsT, OutT]):
    """One agent. `agent` runs on whatever model it is given; `offline` is what the offline
    model answers for it; `render` turns the agent's output into the run's output text."""

    agent_id: str
    name: str
    description: str
    parameters: type[ParamsT]
    agent: Agent[ParamsT, OutT]
    offline: Callable[[str, ParamsT], OutT]
    render: Callable[[OutT], str]

    def validate_parameters(self, raw: object) -> ParamsT:
        """`raw` as this agent's parameters, or `Invalid` pointing at the first bad field."""
        try:
            return self.parameters.model_validate({} if raw is None else raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "parameters"
            raise Invalid(
                f"{field}: {error['msg']}", loc=("body", "parameters", *error["loc"])
            ) from None

    def prompt(self, input_text: str, parameters: ParamsT) -> str:
        encoded = parameters.model_dump(mode="json", exclude_none=True)
        return render_prompt(self.agent_id, encoded, input_text)

    def answer_offline(self, input_text: str, raw_parameters: Any) -> str:
        """The offline model's answer, in the form the agent expects from any model."""
        try:
            parameters = self.parameters.model_validate(raw_parameters)
        except ValidationError as exc:
            raise ValueError(f"invalid parameters for '{self.agent_id}': {exc}") from None
        output = self.offline(input_text, parameters)
        return output.model_dump_json() if isinstance(output, BaseModel) else str(output)

    async def run(self, input_text: str, parameters: ParamsT, *, model: Model) -> AgentResult:
        result = await self.agent.run(
            self.prompt(input_text, parameters), deps=parameters, model=model
        )
        return self.finished(result, model)

    def finished(self, result: AgentRunResult[OutT], model: Model) -> AgentResult:
        """What a finished run of this agent (streamed or not) produced and used."""
        usage = result.usage
        return AgentResult(
            output=self.render(result.output),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            requests=usage.requests,
            model_name=result.response.model_name or model.model_name,
        )
