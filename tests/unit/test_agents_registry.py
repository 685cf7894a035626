"""The agent registry, parameter validation and what an unknown agent looks like."""

from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent

from tandem.agents import (
    AgentRegistry,
    AgentSpec,
    OfflineModel,
    UnknownAgent,
    registry,
    run_agent,
)
from tandem.agents.providers import offline_model
from tandem.errors import Invalid, NotFound

pytestmark = pytest.mark.anyio


def test_built_in_agents_are_listed_with_a_name_and_description() -> None:
    agents = registry.list()
    assert [spec.agent_id for spec in agents] == ["summarizer", "classifier", "content-writer"]
    assert all(spec.name and spec.description for spec in agents)


def test_an_unknown_agent_is_a_key_error_and_a_404() -> None:
    with pytest.raises(UnknownAgent) as caught:
        registry.get("translator")
    error = caught.value
    assert isinstance(error, KeyError)
    assert isinstance(error, NotFound)
    assert str(error) == "Agent 'translator' not found"
    assert (error.status_code, error.body()) == (404, {"detail": "Agent 'translator' not found"})


async def test_run_agent_refuses_an_unknown_agent() -> None:
    with pytest.raises(UnknownAgent):
        await run_agent("translator", "Hola", {}, model=offline_model())


@pytest.mark.parametrize(
    ("agent_id", "parameters", "loc", "message"),
    [
        pytest.param(
            "summarizer",
            {"max_words": 0},
            ["max_words"],
            "greater than or equal to 1",
            id="max-words-zero",
        ),
        pytest.param(
            "summarizer", {"max_words": "many"}, ["max_words"], "valid integer", id="max-words-text"
        ),
        pytest.param(
            "summarizer", {"tone": "casual"}, ["tone"], "Extra inputs", id="unknown-parameter"
        ),
        pytest.param("classifier", {}, ["labels"], "Field required", id="labels-missing"),
        pytest.param("classifier", {"labels": ["spam"]}, ["labels"], "at least 2", id="one-label"),
        pytest.param(
            "classifier",
            {"labels": ["spam", " Spam "]},
            ["labels"],
            "distinct",
            id="same-label-twice",
        ),
        pytest.param(
            "classifier",
            {"labels": ["spam", " "]},
            ["labels", 1],
            "at least 1 character",
            id="blank-label",
        ),
        pytest.param(
            "classifier", {"labels": "spam,ham"}, ["labels"], "valid list", id="labels-not-a-list"
        ),
        pytest.param(
            "content-writer", {"platform": "myspace"}, ["platform"], "'linkedin'", id="platform"
        ),
        pytest.param("content-writer", {"tone": "angry"}, ["tone"], "'casual'", id="tone"),
        pytest.param(
            "content-writer",
            {"variant": -1},
            ["variant"],
            "greater than or equal to 0",
            id="variant",
        ),
        pytest.param(
            "content-writer",
            {"topics": [""]},
            ["topics", 0],
            "at least 1 character",
            id="empty-topic",
        ),
        pytest.param("summarizer", ["max_words"], [], "valid dictionary", id="not-an-object"),
    ],
)
async def test_bad_parameters_are_a_422_pointing_at_the_field(
    agent_id: str, parameters: Any, loc: list[str | int], message: str
) -> None:
    with pytest.raises(Invalid) as caught:
        await run_agent(agent_id, "Some text to work on.", parameters, model=offline_model())
    (error,) = caught.value.body()["detail"]
    assert error["loc"] == ["body", "parameters", *loc]
    assert message in error["msg"]
    assert error["type"] == "value_error"


@pytest.mark.parametrize("text", [pytest.param("", id="empty"), pytest.param(" \n\t", id="blank")])
async def test_empty_input_text_is_a_422(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        await run_agent("summarizer", text, None, model=offline_model())
    assert caught.value.loc == ["body", "input_text"]


class ShoutParameters(BaseModel):
    exclamations: int = 1


def shout(text: str, parameters: ShoutParameters) -> str:
    return text.upper() + "!" * parameters.exclamations


SHOUTER = AgentSpec(
    agent_id="shouter",
    name="Shouter",
    description="Repeats input_text in capitals.",
    parameters=ShoutParameters,
    agent=Agent(output_type=str, deps_type=ShoutParameters, instructions="Shout the text."),
    offline=shout,
    render=str,
)


async def test_an_agent_is_one_spec_and_runs_offline_through_its_registry() -> None:
    agents = AgentRegistry([SHOUTER])
    model = OfflineModel(agents.offline_skills())
    spec = agents.get("shouter")
    result = await spec.run("hello", spec.validate_parameters({"exclamations": 3}), model=model)
    assert result.output == "HELLO!!!"
    assert result.requests == 1


def test_an_agent_id_is_registered_once() -> None:
    agents = AgentRegistry([SHOUTER])
    with pytest.raises(ValueError, match="shouter"):
        agents.register(SHOUTER)
