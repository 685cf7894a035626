"""`ticket-triage`: the category of a support ticket and a draft reply, as JSON text."""

import json

from pydantic import BaseModel, ConfigDict, Field
from pydantic_ai import Agent

from tandem.agents.spec import AgentSpec

CATEGORIES = ("billing", "bug", "question")


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(default="our product", max_length=100)


class Triage(BaseModel):
    category: str = Field(description=f"One of {', '.join(CATEGORIES)}")
    reply: str = Field(description="A short, friendly reply to the customer")


agent = Agent(
    output_type=Triage,
    deps_type=Parameters,
    name="ticket-triage",
    instructions="Classify the support ticket and draft a short reply to the customer.",
)


def offline(ticket: str, parameters: Parameters) -> Triage:
    lowered = ticket.lower()
    category = "billing" if "invoice" in lowered else "bug" if "error" in lowered else "question"
    return Triage(category=category, reply=f"Thanks for contacting us about {parameters.product}.")


def render(output: Triage) -> str:
    return json.dumps(output.model_dump())


spec = AgentSpec(
    agent_id="ticket-triage",
    name="Ticket triage",
    description="Classifies a support ticket and drafts a reply.",
    parameters=Parameters,
    agent=agent,
    offline=offline,
    render=render,
)
