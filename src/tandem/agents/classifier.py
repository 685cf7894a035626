"""classifier: one label of parameters.labels for input_text, with a score for every label.

The run's output is JSON text: {"label": "...", "scores": {"<label>": 0.0-1.0, ...}}.
"""

import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_ai import Agent, ModelRetry, RunContext

from tandem.agents.offline import classify_text
from tandem.agents.spec import AgentSpec

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[Label] = Field(min_length=2, max_length=50, description="The candidate labels")

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        folded = [label.casefold() for label in labels]
        if len(set(folded)) != len(folded):
            raise ValueError("labels must be distinct")
        return labels


class Classification(BaseModel):
    label: str = Field(description="Exactly one of the given labels")
    scores: dict[str, float] = Field(description="A score between 0 and 1 for every label")


agent = Agent(
    output_type=Classification,
    deps_type=Parameters,
    name="classifier",
    retries=2,
    instructions=(
        "You classify the text between <input_text> tags into exactly one of the given labels, "
        "and score how well each label fits, from 0 to 1."
    ),
)


@agent.instructions
def _labels(ctx: RunContext[Parameters]) -> str:
    return "The labels: " + ", ".join(json.dumps(label) for label in ctx.deps.labels) + "."


@agent.output_validator
def _known_label(ctx: RunContext[Parameters], output: Classification) -> Classification:
    """Map the model's spelling back to the caller's labels; every label gets a score."""
    canonical = {label.casefold(): label for label in ctx.deps.labels}
    label = canonical.get(output.label.strip().casefold())
    if label is None:
        raise ModelRetry(
            f"{output.label!r} is not one of the labels: {', '.join(canonical.values())}"
        )
    scores = dict.fromkeys(ctx.deps.labels, 0.0)
    for name, score in output.scores.items():
        if name.strip().casefold() in canonical:
            scores[canonical[name.strip().casefold()]] = round(min(max(score, 0.0), 1.0), 4)
    return Classification(label=label, scores=scores)


def offline(input_text: str, parameters: Parameters) -> Classification:
    result = classify_text(input_text, parameters.labels)
    return Classification(label=result.label, scores=result.scores)


def render(output: Classification) -> str:
    return json.dumps({"label": output.label, "scores": output.scores}, ensure_ascii=False)


spec = AgentSpec(
    agent_id="classifier",
    name="Classifier",
    description=(
        "Picks one of parameters.labels for input_text; the output is JSON text "
        '{"label": ..., "scores": {...}}.'
    ),
    parameters=Parameters,
    agent=agent,
    offline=offline,
    render=render,
)
