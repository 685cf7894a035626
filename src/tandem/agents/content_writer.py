"""content-writer: one social post about parameters.topics for a platform and a tone.

The content pipeline calls it once per draft with `variant` set to the draft's index, and, to
revise a draft, with the reviewer's `feedback` and the `previous_draft`. input_text carries
source material (or the brief); the post draws its points from it.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic_ai import Agent, ModelRetry, RunContext

from tandem.agents.drafting import TWITTER_LIMIT, DraftRequest, write_draft
from tandem.agents.spec import AgentSpec

Topic = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Platform = Literal["linkedin", "twitter", "instagram", "blog"]
Tone = Literal["professional", "casual", "educational", "promotional"]

_PLATFORM_RULES: dict[str, str] = {
    "linkedin": "A LinkedIn post: a one-line hook, two to four short points, a question or "
    "call to action, and up to five hashtags.",
    "twitter": f"A tweet of at most {TWITTER_LIMIT} characters, hashtags included.",
    "instagram": "An Instagram caption: a hook, short lines, a call to action, then up to "
    "ten hashtags.",
    "blog": "A short blog post in Markdown: a # title, an introduction, a ## section per "
    "topic, and a closing paragraph.",
}


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: list[Topic] = Field(
        default_factory=list, max_length=20, description="What the post is about"
    )
    platform: Platform = "linkedin"
    tone: Tone = "professional"
    brief: str | None = Field(default=None, max_length=4000)
    feedback: str | None = Field(default=None, max_length=4000, description="A reviewer's notes")
    previous_draft: str | None = Field(default=None, max_length=20000)
    variant: int = Field(
        default=0, ge=0, le=1000, description="The draft's index, so a batch takes different angles"
    )


agent = Agent(
    output_type=str,
    deps_type=Parameters,
    name="content-writer",
    retries=2,
    instructions=(
        "You write one social media post. Use the text between <input_text> tags as source "
        "material and the parameters for topics, platform, tone and brief. Reply with the post "
        "only, ready to publish, without quotes or commentary."
    ),
)


@agent.instructions
def _brief(ctx: RunContext[Parameters]) -> str:
    parameters = ctx.deps
    lines = [_PLATFORM_RULES[parameters.platform], f"Tone: {parameters.tone}."]
    if parameters.topics:
        lines.append("Topics: " + ", ".join(parameters.topics) + ".")
    if parameters.brief:
        lines.append(f"Brief: {parameters.brief}")
    if parameters.variant:
        lines.append(f"This is draft number {parameters.variant + 1}: take a different angle.")
    if parameters.previous_draft or parameters.feedback:
        lines.append("Revise the previous draft so that it follows the reviewer's feedback.")
    return "\n".join(lines)


@agent.output_validator
def _fits_platform(ctx: RunContext[Parameters], output: str) -> str:
    post = output.strip()
    if not post:
        raise ModelRetry("The post is empty; write the post.")
    if ctx.deps.platform == "twitter" and len(post) > TWITTER_LIMIT:
        raise ModelRetry(f"The post has {len(post)} characters; a tweet allows {TWITTER_LIMIT}.")
    return post


def offline(input_text: str, parameters: Parameters) -> str:
    return write_draft(
        DraftRequest(
            topics=parameters.topics,
            platform=parameters.platform,
            tone=parameters.tone,
            source=input_text,
            brief=parameters.brief,
            feedback=parameters.feedback,
            previous_draft=parameters.previous_draft,
            variant=parameters.variant,
        )
    )


spec = AgentSpec(
    agent_id="content-writer",
    name="Content writer",
    description=(
        "Writes one social post about parameters.topics for parameters.platform "
        "(linkedin, twitter, instagram, blog) in parameters.tone; revises a previous_draft "
        "with a reviewer's feedback."
    ),
    parameters=Parameters,
    agent=agent,
    offline=offline,
    render=str,
)
