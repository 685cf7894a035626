"""The task registry (its tasks are listed in `tandem.plugins`) and the process-wide
services tasks use, built once per process."""

from dataclasses import dataclass, field
from typing import Any

from tandem.agents.providers import AgentModels
from tandem.content import generation as content_generation
from tandem.jobs.registry import TaskRegistry, registry
from tandem.scheduling import tasks as scheduling_tasks
from tandem.settings import Settings

__all__ = ["TaskResources", "registry", "task_registry"]


def task_registry() -> TaskRegistry:
    return registry


@dataclass
class TaskResources:
    """What executors hand tasks as `context.resources`; close it when the process stops."""

    settings: Settings
    mapping: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        models = AgentModels(self.settings, overrides=self.settings.llm_agent_models)
        self.mapping = {
            "agent_models": models,
            **content_generation.resources(self.settings),
            **scheduling_tasks.resources(self.settings),
        }

    async def aclose(self) -> None:
        models: AgentModels = self.mapping["agent_models"]
        await models.aclose()
