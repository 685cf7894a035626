"""Agents against an OpenAI-compatible endpoint, mocked at the HTTP boundary with respx.

The request goes through the real stack: pydantic-ai's OpenAIChatModel, the OpenAI SDK, our
retrying httpx transport. Only the endpoint is fake; backoff sleeps are recorded, not waited.
"""

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from tandem.agents import AgentFailed, AgentModels, run_agent
from tandem.settings import Settings

pytestmark = pytest.mark.anyio

BASE_URL = "http://llm.test/v1"
COMPLETIONS = f"{BASE_URL}/chat/completions"
TEXT = "The museum reopens on Friday after a two-year renovation. Entry is free in May."


def completion(
    *,
    content: str | None = "The museum reopens Friday.",
    tool_call: dict[str, Any] | None = None,
    prompt_tokens: int = 57,
    completion_tokens: int = 9,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_call is not None:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": tool_call["name"],
                    "arguments": json.dumps(tool_call["arguments"]),
                },
            }
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test-2025-01-01",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def models(sleeps: Sleeps) -> AsyncIterator[AgentModels]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        llm_base_url=BASE_URL,
        llm_api_key="sk-test",
        llm_model="gpt-test",
        llm_max_retries=2,
    )
    agent_models = AgentModels(settings, sleep=sleeps)
    yield agent_models
    await agent_models.aclose()


@pytest.fixture
def endpoint() -> Iterator[respx.Route]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router.post(COMPLETIONS)


async def test_request_shape_and_usage(models: AgentModels, endpoint: respx.Route) -> None:
    endpoint.respond(200, json=completion(prompt_tokens=57, completion_tokens=9))
    result = await run_agent(
        "summarizer", TEXT, {"max_words": 20}, model=models.for_agent("summarizer")
    )

    assert result.output == "The museum reopens Friday."
    assert (result.input_tokens, result.output_tokens, result.requests) == (57, 9, 1)
    assert result.model_name == "gpt-test-2025-01-01"
    request = endpoint.calls.last.request
    assert request.headers["authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["model"] == "gpt-test"
    *instructions, prompt = body["messages"]
    assert {message["role"] for message in instructions} == {"system"}
    assert any("at most 20 words" in message["content"] for message in instructions)
    assert prompt["role"] == "user"
    assert TEXT in prompt["content"]


async def test_structured_output_arrives_as_a_tool_call(
    models: AgentModels, endpoint: respx.Route
) -> None:
    arguments = {"label": "events", "scores": {"events": 0.9, "weather": 0.1}}
    endpoint.respond(
        200,
        json=completion(content=None, tool_call={"name": "final_result", "arguments": arguments}),
    )
    result = await run_agent(
        "classifier", TEXT, {"labels": ["events", "weather"]}, model=models.for_agent("classifier")
    )

    assert json.loads(result.output) == arguments
    body = json.loads(endpoint.calls.last.request.content)
    assert [tool["function"]["name"] for tool in body["tools"]] == ["final_result"]


async def test_a_429_is_retried_after_the_time_the_server_asked_for(
    models: AgentModels, endpoint: respx.Route, sleeps: Sleeps
) -> None:
    endpoint.side_effect = [
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "slow down"}}),
        httpx.Response(200, json=completion()),
    ]
    result = await run_agent("summarizer", TEXT, {}, model=models.for_agent("summarizer"))

    assert result.output == "The museum reopens Friday."
    assert endpoint.call_count == 2
    assert sleeps == [2.0]
    assert result.requests == 1  # one model request, sent twice by the transport


async def test_500_three_times_fails_the_run(
    models: AgentModels, endpoint: respx.Route, sleeps: Sleeps
) -> None:
    endpoint.respond(500, json={"error": {"message": "upstream exploded", "type": "server_error"}})
    with pytest.raises(AgentFailed) as caught:
        await run_agent("summarizer", TEXT, {}, model=models.for_agent("summarizer"))

    assert caught.value.message == "The model endpoint answered HTTP 500: upstream exploded"
    assert endpoint.call_count == 3  # the first attempt and TANDEM_LLM_MAX_RETRIES=2 retries
    assert len(sleeps) == 2


async def test_a_client_error_is_not_retried(models: AgentModels, endpoint: respx.Route) -> None:
    endpoint.respond(401, json={"error": {"message": "Incorrect API key provided"}})
    with pytest.raises(AgentFailed) as caught:
        await run_agent("summarizer", TEXT, {}, model=models.for_agent("summarizer"))

    assert (
        caught.value.message == "The model endpoint answered HTTP 401: Incorrect API key provided"
    )
    assert endpoint.call_count == 1


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(
            httpx.ReadTimeout("read timed out"), "The model did not answer in time", id="timeout"
        ),
        pytest.param(
            httpx.ConnectError("connection refused"),
            "Could not reach the model endpoint",
            id="refused",
        ),
    ],
)
async def test_transport_failures_fail_the_run(
    models: AgentModels, endpoint: respx.Route, error: Exception, message: str
) -> None:
    endpoint.side_effect = error
    with pytest.raises(AgentFailed) as caught:
        await run_agent("summarizer", TEXT, {}, model=models.for_agent("summarizer"))
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(httpx.Response(200, text="<html>gateway</html>"), id="not-json"),
        pytest.param(
            httpx.Response(200, json={"id": "x", "object": "chat.completion"}), id="no-choices"
        ),
        pytest.param(httpx.Response(200, json=completion(content="   ")), id="empty-answer"),
    ],
)
async def test_malformed_answers_fail_the_run(
    models: AgentModels, endpoint: respx.Route, response: httpx.Response
) -> None:
    endpoint.return_value = response
    with pytest.raises(AgentFailed) as caught:
        await run_agent("summarizer", TEXT, {}, model=models.for_agent("summarizer"))
    assert caught.value.message.startswith(
        ("The model's output was not usable", "The model request failed")
    )
    assert "\n" not in caught.value.message
