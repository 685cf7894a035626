"""Which model an agent gets from Settings, and the retrying transport (on an in-memory one)."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic_ai.models.openai import OpenAIChatModel

from tandem.agents import AgentModels, OfflineModel, UnknownAgent, build_model
from tandem.agents.providers import RetryingTransport, retry_after_seconds
from tandem.retry import RetryPolicy
from tandem.settings import Settings

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def settings(**values: object) -> Settings:
    fields: dict[str, object] = {"llm_base_url": None, "llm_api_key": None, "llm_model": None}
    fields.update(values)
    return Settings(_env_file=None, **fields)  # type: ignore[arg-type]


ONLINE = {"llm_base_url": "http://llm.test/v1", "llm_model": "big-model"}


def test_no_endpoint_means_the_offline_model() -> None:
    model = build_model(settings(llm_model="ignored-without-endpoint"))
    assert isinstance(model, OfflineModel)
    assert model.model_name == "tandem-offline"


def test_an_endpoint_means_an_openai_chat_model() -> None:
    model = build_model(settings(**ONLINE))
    assert isinstance(model, OpenAIChatModel)
    assert model.model_name == "big-model"


def test_a_model_name_overrides_the_configured_one() -> None:
    assert build_model(settings(**ONLINE), model_name="small-model").model_name == "small-model"
    assert isinstance(build_model(settings(**ONLINE), model_name="offline"), OfflineModel)


def test_an_endpoint_without_a_model_name_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="TANDEM_LLM_MODEL"):
        build_model(settings(llm_base_url="http://llm.test/v1"))


async def test_agent_models_apply_per_agent_overrides() -> None:
    models = AgentModels(
        settings(**ONLINE), overrides={"classifier": "small-model", "summarizer": "offline"}
    )
    try:
        assert models.for_agent("classifier").model_name == "small-model"
        assert isinstance(models.for_agent("summarizer"), OfflineModel)
        assert models.for_agent("content-writer").model_name == "big-model"
        assert models.for_agent("classifier") is models.for_agent("classifier")
    finally:
        await models.aclose()


async def test_agent_models_refuse_an_override_for_an_unknown_agent() -> None:
    with pytest.raises(UnknownAgent):
        AgentModels(settings(**ONLINE), overrides={"sumariser": "small-model"})


async def test_agent_models_refuse_an_endpoint_without_a_model() -> None:
    with pytest.raises(ValueError, match="TANDEM_LLM_MODEL"):
        AgentModels(settings(llm_base_url="http://llm.test/v1"))


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"Retry-After": "2"}, 2.0, id="seconds"),
        pytest.param({"Retry-After": "0.5"}, 0.5, id="fraction"),
        pytest.param({"Retry-After": "-3"}, 0.0, id="negative"),
        pytest.param(
            {"Retry-After": format_datetime(NOW + timedelta(seconds=10))}, 10.0, id="http-date"
        ),
        pytest.param(
            {"Retry-After": format_datetime(NOW - timedelta(seconds=10))}, 0.0, id="past-date"
        ),
        pytest.param({"Retry-After": "soon"}, None, id="unreadable"),
        pytest.param({"retry-after-ms": "250", "Retry-After": "9"}, 0.25, id="milliseconds-first"),
        pytest.param({"retry-after-ms": "x", "Retry-After": "9"}, 9.0, id="bad-milliseconds"),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers), now=NOW) == seconds


class Sleeps(list[float]):
    """Records the delays the transport asked for, without waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def scripted(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return responses[min(len(sent), len(responses)) - 1]

    return httpx.MockTransport(handle), sent


POLICY = RetryPolicy(max_attempts=3, base_seconds=1.0, cap_seconds=30.0, jitter=0.5)


async def send(transport: httpx.AsyncBaseTransport) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport) as client:
        return await client.post("http://llm.test/v1/chat/completions", json={"model": "m"})


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        pytest.param(429, True, id="429"),
        pytest.param(500, True, id="500"),
        pytest.param(503, True, id="503"),
        pytest.param(400, False, id="400"),
        pytest.param(401, False, id="401"),
        pytest.param(404, False, id="404"),
    ],
)
async def test_which_answers_are_retried(status: int, retried: bool) -> None:
    wrapped, sent = scripted(httpx.Response(status), httpx.Response(200))
    sleeps = Sleeps()
    response = await send(RetryingTransport(wrapped, policy=POLICY, sleep=sleeps))
    assert response.status_code == (200 if retried else status)
    assert len(sent) == (2 if retried else 1)
    assert len(sleeps) == (1 if retried else 0)


async def test_backoff_grows_and_gives_up_after_the_last_attempt() -> None:
    wrapped, sent = scripted(httpx.Response(502, json={"error": "bad gateway"}))
    sleeps = Sleeps()
    response = await send(RetryingTransport(wrapped, policy=POLICY, sleep=sleeps))
    assert (response.status_code, response.json()) == (502, {"error": "bad gateway"})
    assert len(sent) == 3
    # Jitter 0.5 spreads each delay over [half, all] of 1 s, then 2 s.
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0


async def test_retry_after_is_honoured() -> None:
    wrapped, sent = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json={"n": 2})
    )
    sleeps = Sleeps()
    response = await send(RetryingTransport(wrapped, policy=POLICY, sleep=sleeps))
    assert (response.status_code, response.json()) == (200, {"n": 2})  # the second answer
    assert sleeps == [7.0]
    assert sent[0].content == sent[1].content == b'{"model":"m"}'


async def test_a_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    wrapped, sent = scripted(
        httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200)
    )
    sleeps = Sleeps()
    response = await send(RetryingTransport(wrapped, policy=POLICY, sleep=sleeps))
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3600")
    assert len(sent) == 1
    assert sleeps == []


async def test_no_retries_configured_means_one_attempt() -> None:
    wrapped, sent = scripted(httpx.Response(500, json={"n": 1}), httpx.Response(200))
    policy = RetryPolicy(max_attempts=1, base_seconds=1.0)
    response = await send(RetryingTransport(wrapped, policy=policy, sleep=Sleeps()))
    assert (response.status_code, response.json()) == (500, {"n": 1})
    assert len(sent) == 1
