"""The models agents run on, built from Settings.

With TANDEM_LLM_BASE_URL set, agents talk to that OpenAI-compatible endpoint (Chat Completions)
through one shared `httpx.AsyncClient`. Its transport retries 429 and 5xx answers with
exponential backoff and jitter, honouring `Retry-After` (and OpenAI's `retry-after-ms`); the
OpenAI SDK's own retries are off, so each request is retried in exactly one place. Without an
endpoint, every agent runs on the offline model.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio
import httpx
from openai import AsyncOpenAI
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tandem.agents.offline import OfflineModel
from tandem.agents.registry import registry
from tandem.retry import RetryPolicy
from tandem.settings import Settings

logger = logging.getLogger(__name__)

OFFLINE = "offline"  # as a model name (e.g. a per-agent override): the offline model
RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 30.0  # also the longest Retry-After we wait for; longer ones fail fast

Sleep = Callable[[float], Awaitable[None]]


def is_retryable(status_code: int) -> bool:
    return status_code == 429 or 500 <= status_code <= 599


def retry_after_seconds(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """How long the server asked us to wait: `retry-after-ms`, or `Retry-After` in seconds or
    as an HTTP date; None when it did not say (or said something unreadable)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def llm_retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.llm_max_retries + 1,
        base_seconds=RETRY_BASE_SECONDS,
        cap_seconds=RETRY_CAP_SECONDS,
        jitter=0.5,
    )


class RetryingTransport(httpx.AsyncBaseTransport):
    """Sends a request again after a 429 or 5xx answer, until the policy gives up.

    The last answer is returned as it is, so the caller sees the real status and body. A
    `Retry-After` longer than the policy's cap is not waited for: the answer is returned at
    once rather than holding a run (and a connection) for minutes.
    """

    def __init__(
        self, wrapped: httpx.AsyncBaseTransport, *, policy: RetryPolicy, sleep: Sleep = anyio.sleep
    ) -> None:
        self._wrapped = wrapped
        self._policy = policy
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempts = 0
        while True:
            response = await self._wrapped.handle_async_request(request)
            attempts += 1
            if not is_retryable(response.status_code) or self._policy.gives_up(attempts):
                return response
            delay = self._delay(attempts, response)
            if delay is None:
                return response
            logger.warning(
                "Model endpoint answered %s; retrying in %.1f s (attempt %d of %d)",
                response.status_code,
                delay,
                attempts + 1,
                self._policy.max_attempts,
            )
            await response.aclose()
            await self._sleep(delay)

    def _delay(self, attempts: int, response: httpx.Response) -> float | None:
        asked = retry_after_seconds(response.headers)
        if asked is None:
            return self._policy.delay(attempts).total_seconds()
        return asked if asked <= self._policy.cap_seconds else None

    async def aclose(self) -> None:
        await self._wrapped.aclose()


def build_http_client(
    settings: Settings, *, policy: RetryPolicy | None = None, sleep: Sleep = anyio.sleep
) -> httpx.AsyncClient:
    transport = RetryingTransport(
        httpx.AsyncHTTPTransport(), policy=policy or llm_retry_policy(settings), sleep=sleep
    )
    return httpx.AsyncClient(transport=transport, timeout=settings.llm_timeout_seconds)


def offline_model() -> OfflineModel:
    return OfflineModel(registry.offline_skills())


def build_model(
    settings: Settings,
    *,
    model_name: str | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> Model:
    """The model called `model_name` (default TANDEM_LLM_MODEL) at the configured endpoint;
    the offline model when no endpoint is configured or the name is "offline". Without
    `http_client` the model gets a retrying client of its own (see `AgentModels` to share one)."""
    name = model_name or settings.llm_model
    if settings.llm_base_url is None or name == OFFLINE:
        return offline_model()
    if not name:
        raise ValueError("TANDEM_LLM_MODEL must be set when TANDEM_LLM_BASE_URL is")
    client = AsyncOpenAI(
        base_url=settings.llm_base_url,
        # Local servers (Ollama, vLLM) take any key, but the SDK insists on one.
        api_key=settings.llm_api_key or "not-needed",
        # OpenAI 3 still accepts a legacy httpx client at runtime, outside its annotations;
        # we keep httpx because the project (and respx in the tests) already speak it.
        http_client=http_client or build_http_client(settings),  # type: ignore[arg-type]
        max_retries=0,  # the transport retries; retrying here too would multiply attempts
        timeout=settings.llm_timeout_seconds,
    )
    return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))


class AgentModels:
    """The model each agent runs on: TANDEM_LLM_MODEL, or a per-agent override by model name
    ("offline" for the offline model). Build one per process and `aclose()` it on shutdown."""

    def __init__(
        self,
        settings: Settings,
        *,
        overrides: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self._settings = settings
        self._overrides = dict(overrides or {})
        for agent_id in self._overrides:
            registry.get(agent_id)  # a typo in an agent id fails at start-up, not at run time
        self._http_client = build_http_client(settings, policy=policy, sleep=sleep)
        self._models: dict[str | None, Model] = {}
        self.named(None)  # a missing TANDEM_LLM_MODEL fails here, too

    def for_agent(self, agent_id: str) -> Model:
        return self.named(self._overrides.get(agent_id))

    def named(self, model_name: str | None) -> Model:
        """The model called `model_name` (None: the default), built once and then reused."""
        if model_name not in self._models:
            self._models[model_name] = build_model(
                self._settings, model_name=model_name, http_client=self._http_client
            )
        return self._models[model_name]

    async def aclose(self) -> None:
        await self._http_client.aclose()
