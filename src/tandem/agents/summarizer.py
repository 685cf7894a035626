"""summarizer: a summary of input_text, optionally bounded by parameters.max_words."""

from pydantic import BaseModel, ConfigDict, Field
from pydantic_ai import Agent, ModelRetry, RunContext

from tandem.agents.offline import summarize_text
from tandem.agents.spec import AgentSpec


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_words: int | None = Field(
        default=None, ge=1, le=5000, description="The summary has at most this many words"
    )


agent = Agent(
    output_type=str,
    deps_type=Parameters,
    name="summarizer",
    retries=2,
    instructions=(
        "You summarise the text between <input_text> tags. Keep its key facts and conclusions, "
        "in its language, as plain prose without a preamble. Reply with the summary only."
    ),
)


@agent.instructions
def _length(ctx: RunContext[Parameters]) -> str:
    if ctx.deps.max_words is not None:
        return f"Use at most {ctx.deps.max_words} words."
    return "Use about a third of the original length, or less."


@agent.output_validator
def _within_budget(ctx: RunContext[Parameters], output: str) -> str:
    summary = output.strip()
    if not summary:
        raise ModelRetry("The summary is empty; summarise the text.")
    limit = ctx.deps.max_words
    count = len(summary.split())
    if limit is not None and count > limit:
        if ctx.retry >= ctx.max_retries:
            # Last attempt: a summary cut to the budget beats failing the run.
            return " ".join(summary.split()[:limit]) + "…"
        raise ModelRetry(f"The summary has {count} words; use at most {limit}.")
    return summary


def offline(input_text: str, parameters: Parameters) -> str:
    return " ".join(summarize_text(input_text, max_words=parameters.max_words))


spec = AgentSpec(
    agent_id="summarizer",
    name="Summarizer",
    description="Summarises input_text; parameters.max_words (optional) bounds its length.",
    parameters=Parameters,
    agent=agent,
    offline=offline,
    render=str,
)
