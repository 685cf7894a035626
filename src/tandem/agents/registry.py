"""The agents Tandem knows, by id. Adding one: write its module with a `spec`, and list it
in `tandem.plugins.BUILT_IN` (group `tandem.agents`)."""

from collections.abc import Mapping
from typing import Any

from tandem.agents.offline import OfflineSkill
from tandem.agents.spec import AgentSpec
from tandem.errors import NotFound
from tandem.plugins import AGENTS, Registry

AnySpec = AgentSpec[Any, Any]


class UnknownAgent(NotFound, KeyError):
    """No agent has this id: a KeyError to lookups, a 404 to the HTTP layer."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"Agent '{agent_id}' not found")
        self.agent_id = agent_id

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return self.detail


class AgentRegistry(Registry[AnySpec]):
    what = "Agent"
    key_attribute = "agent_id"

    def unknown(self, name: str) -> Exception:
        return UnknownAgent(name)

    def list(self) -> list[AnySpec]:
        """Every agent, in the order they were registered."""
        return self.all()

    def offline_skills(self) -> Mapping[str, OfflineSkill]:
        """What the offline model needs to answer for each agent."""
        return {spec.agent_id: spec.answer_offline for spec in self.all()}


registry = AgentRegistry(group=AGENTS)
