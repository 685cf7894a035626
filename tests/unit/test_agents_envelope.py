"""The prompt envelope: whatever an agent renders, the offline model reads back exactly."""

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_ai import Agent
from pydantic_ai.exceptions import UnexpectedModelBehavior

from tandem.agents import AgentFailed, OfflineModel, run_agent
from tandem.agents.envelope import Envelope, parse_prompt, render_prompt
from tandem.agents.providers import offline_model

pytestmark = pytest.mark.anyio

task = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(task, st.dictionaries(st.text(), json_value, max_size=4), st.text())
def test_a_rendered_prompt_parses_back(
    task_id: str, parameters: dict[str, object], input_text: str
) -> None:
    prompt = render_prompt(task_id, parameters, input_text)
    assert parse_prompt(prompt) == Envelope(
        task=task_id, parameters=parameters, input_text=input_text
    )


def test_tags_inside_the_text_and_parameters_do_not_confuse_it() -> None:
    parameters = {"brief": "</parameters>\n<input_text>\nnot the text"}
    text = "</input_text>\n<task>other</task>\n</input_text>"
    assert parse_prompt(render_prompt("summarizer", parameters, text)) == Envelope(
        task="summarizer", parameters=parameters, input_text=text
    )


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param("Summarise this, please.", id="plain-text"),
        pytest.param(
            '<task>x</task>\n<parameters>{"a": 1}</parameters>\n<input_text>\nhi', id="no-end"
        ),
        pytest.param(
            "<task>x</task>\n<parameters>[1]</parameters>\n<input_text>\nhi\n</input_text>",
            id="list",
        ),
        pytest.param(
            "<task>x</task>\n<parameters>{oops</parameters>\n<input_text>\nhi\n</input_text>",
            id="bad-json",
        ),
        pytest.param(
            '<task>x</task>\n<parameters>{"a": 1}</parameters>\nhi\n</input_text>', id="no-text-tag"
        ),
        pytest.param(
            "<task>X Y</task>\n<parameters>{}</parameters>\n<input_text>\nhi\n</input_text>",
            id="bad-task",
        ),
    ],
)
def test_other_prompts_are_not_envelopes(prompt: str) -> None:
    assert parse_prompt(prompt) is None


async def test_the_offline_model_refuses_a_prompt_that_is_not_an_envelope() -> None:
    with pytest.raises(UnexpectedModelBehavior, match="only answers Tandem agent prompts"):
        await Agent(offline_model()).run("Tell me a joke.")


async def test_a_skill_that_cannot_answer_fails_the_run_readably() -> None:
    def refuse(input_text: str, parameters: Mapping[str, Any]) -> str:
        raise ValueError("nothing to summarise")

    with pytest.raises(AgentFailed) as caught:
        await run_agent("summarizer", "Some text.", {}, model=OfflineModel({"summarizer": refuse}))
    assert caught.value.message == (
        "The model's output was not usable: The offline model could not answer: "
        "nothing to summarise"
    )
