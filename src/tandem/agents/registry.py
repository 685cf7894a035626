"""The agents Tandem knows, by id. Adding one: write its module, add its `spec` to BUILT_IN."""

from collections.abc import Iterable, Mapping
from typing import Any

from tandem.agents import classifier, content_writer, summarizer
from tandem.agents.offline import OfflineSkill
from tandem.agents.spec import AgentSpec
from tandem.errors import NotFound

AnySpec = AgentSpec[Any, Any]

BUILT_IN: tuple[AnySpec, ...] = (summarizer.spec, classifier.spec, content_writer.spec)


class UnknownAgent(NotFound, KeyError):
    """No agent has this id: a KeyError to lookups, a 404 to the HTTP layer."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"Agent '{agent_id}' not found")
        self.agent_id = agent_id

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return self.detail


class AgentRegistry:
    def __init__(self, specs: Iterable[AnySpec] = ()) -> None:
        self._specs: dict[str, AnySpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: AnySpec) -> None:
        if spec.agent_id in self._specs:
            raise ValueError(f"An agent with id '{spec.agent_id}' is already registered")
        self._specs[spec.agent_id] = spec

    def get(self, agent_id: str) -> AnySpec:
        try:
            return self._specs[agent_id]
        except KeyError:
            raise UnknownAgent(agent_id) from None

    def list(self) -> list[AnySpec]:
        """Every agent, in the order they were registered."""
        return list(self._specs.values())

    def offline_skills(self) -> Mapping[str, OfflineSkill]:
        """What the offline model needs to answer for each agent."""
        return {agent_id: spec.answer_offline for agent_id, spec in self._specs.items()}


registry = AgentRegistry(BUILT_IN)
