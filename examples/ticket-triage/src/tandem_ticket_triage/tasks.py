"""`tickets.triage`: runs the agent over a batch of tickets."""

import json
from typing import Any

from pydantic import BaseModel, Field

from tandem.agents.providers import AgentModels
from tandem.jobs.registry import TaskContext, task
from tandem_ticket_triage.agent import Parameters, spec


class Batch(BaseModel):
    tickets: list[str] = Field(min_length=1, max_length=100)


@task("tickets.triage", description="Triages a batch of tickets", payload_model=Batch)
async def triage_batch(context: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    batch = Batch.model_validate(payload)
    models: AgentModels = context.resources["agent_models"]
    model = models.for_agent(spec.agent_id)
    results = []
    for ticket in batch.tickets:
        answer = await spec.run(ticket, Parameters(), model=model)
        results.append(json.loads(answer.output))
    return {"triaged": results}
