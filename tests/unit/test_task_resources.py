"""The services tasks get from their executor, built from the settings."""

import pytest
from pydantic_ai.models import Model

from tandem.agents import UnknownAgent
from tandem.settings import Settings
from tandem.tasks import TaskResources, task_registry

pytestmark = pytest.mark.anyio


async def test_agent_models_follow_the_per_agent_overrides() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        llm_base_url="http://llm.test/v1",
        llm_model="big-model",
        llm_api_key="k",
        llm_agent_models={"classifier": "offline"},
    )
    resources = TaskResources(settings)
    try:
        models = resources.mapping["agent_models"]
        classifier: Model = models.for_agent("classifier")
        summarizer: Model = models.for_agent("summarizer")
        assert classifier.model_name == "tandem-offline"
        assert summarizer.model_name == "big-model"
    finally:
        await resources.aclose()


def test_an_override_for_an_unknown_agent_fails_at_start() -> None:
    settings = Settings(_env_file=None, llm_agent_models={"nope": "offline"})  # type: ignore[call-arg]
    with pytest.raises(UnknownAgent):
        TaskResources(settings)


def test_every_task_module_is_registered() -> None:
    assert task_registry().names() == [
        "agent.run",
        "content.generate",
        "echo",
        "review.digest",
        "schedule.generate",
        "webhook.deliver",
    ]
