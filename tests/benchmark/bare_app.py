"""The yardstick of the load benchmark: a bare FastAPI app, no middleware, no database,
answering `GET /api/v1/agents` with the same JSON body as Tandem (same pydantic shapes).

Served by `python -m uvicorn tests.benchmark.bare_app:app`, like `tandem serve`.
"""

from fastapi import FastAPI
from pydantic import BaseModel

from tandem.agents.registry import registry
from tandem.plugins import load_all


class AgentOut(BaseModel):
    agent_id: str
    name: str
    description: str


class Page(BaseModel):
    items: list[AgentOut]
    count: int


load_all()
AGENTS = [
    {"agent_id": spec.agent_id, "name": spec.name, "description": spec.description}
    for spec in registry.list()
]

app = FastAPI()


@app.get("/api/v1/agents")
async def list_agents() -> Page:
    items = [AgentOut(**agent) for agent in AGENTS]
    return Page(items=items, count=len(items))
