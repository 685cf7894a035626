"""Agents: a registry of pydantic-ai agents, the models they run on, and `run_agent`."""

from tandem.agents.offline import OfflineModel
from tandem.agents.providers import AgentModels, build_model
from tandem.agents.registry import AgentRegistry, UnknownAgent, registry
from tandem.agents.runner import run_agent
from tandem.agents.spec import AgentFailed, AgentResult, AgentSpec

__all__ = [
    "AgentFailed",
    "AgentModels",
    "AgentRegistry",
    "AgentResult",
    "AgentSpec",
    "OfflineModel",
    "UnknownAgent",
    "build_model",
    "registry",
    "run_agent",
]
