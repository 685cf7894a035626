"""The one path agents, tasks and review kinds come in by (tandem.plugins)."""

import pytest

from tandem.agents.registry import registry as agents
from tandem.jobs.registry import registry as tasks
from tandem.plugins import AGENTS, REVIEW_KINDS, TASKS, Registry, providers
from tandem.review.kinds import kinds


@pytest.mark.parametrize(
    ("group", "registry"),
    [
        pytest.param(AGENTS, agents, id="agents"),
        pytest.param(TASKS, tasks, id="tasks"),
        pytest.param(REVIEW_KINDS, kinds, id="review-kinds"),
    ],
)
def test_each_provider_names_the_object_its_registry_knows_by_that_name(
    group: str, registry: Registry[object]
) -> None:
    for provider in providers(group):
        assert registry.get(provider.name) is provider.load()
    assert sorted(provider.name for provider in providers(group)) == [
        name for name in registry.names() if name in {p.name for p in providers(group)}
    ]


class Named(Registry[str]):
    what = "Word"

    def key(self, item: str) -> str:
        return item  # strings are their own name


def test_a_registry_refuses_a_second_object_with_a_taken_name() -> None:
    words = Named(["tandem"])
    with pytest.raises(ValueError, match="Word 'tandem' is already registered"):
        words.register("tandem")
    with pytest.raises(LookupError, match="No word 'bicycle' is registered"):
        words.get("bicycle")
