"""`tickets.triage`: runs the agent over a batch of tickets, and puts each drafted reply in
the review queue (a `ticket_reply` thread) for a person to approve before it is sent."""

import json
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from tandem.agents.providers import AgentModels
from tandem.identity.principal import principal_of_user
from tandem.jobs.models import Job
from tandem.jobs.registry import TaskContext, task
from tandem.review.models import ReviewThread
from tandem.review.service import open_thread
from tandem_ticket_triage.agent import Parameters, spec
from tandem_ticket_triage.review import ticket_reply


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
    async with context.sessionmaker() as session, session.begin():
        job = await session.get_one(Job, context.job_id)
        # The replies wait for review on behalf of whoever submitted the batch.
        submitter = job.submitted_by_id and await principal_of_user(session, job.submitted_by_id)
        if not submitter:
            return {"triaged": results, "threads": []}
        # Idempotent: a batch run again after a crash finds the threads it opened.
        opened = await session.execute(
            select(ReviewThread.id, ReviewThread.payload).where(
                ReviewThread.organization_id == submitter.organization_id,
                ReviewThread.kind == ticket_reply.name,
                ReviewThread.created_at >= job.created_at,
            )
        )
        threads = [row.id for row in opened if row.payload.get("job_id") == str(job.id)]
        if not threads:
            for ticket, result in zip(batch.tickets, results, strict=True):
                thread = await open_thread(
                    session,
                    submitter,
                    kind=ticket_reply.name,
                    drafts=[result["reply"]],
                    payload={"job_id": str(job.id), "ticket": ticket, **result},
                    quota=context.settings.quota_waiting_threads,
                )
                threads.append(thread.id)
    return {"triaged": results, "threads": [str(thread_id) for thread_id in threads]}
