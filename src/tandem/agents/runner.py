"""The one entry point the run service calls: run an agent, get its output and usage."""

from collections.abc import Mapping
from typing import Any

from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRequestTimeout,
    ModelTimeoutError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    UserError,
)
from pydantic_ai.models import Model

from tandem.agents.registry import registry
from tandem.agents.spec import AgentFailed, AgentResult
from tandem.errors import Invalid

_MAX_MESSAGE = 300


async def run_agent(
    agent_id: str, input_text: str, parameters: Mapping[str, Any] | None, *, model: Model
) -> AgentResult:
    """Run `agent_id` on `input_text` with `model`.

    Raises `UnknownAgent` (a 404) for an unknown id, `Invalid` (a 422) for empty input or bad
    parameters, and `AgentFailed` with a one-line reason when the model fails: a timeout, an
    HTTP error left after the transport's retries, or output that stayed unusable.
    """
    spec = registry.get(agent_id)
    valid = spec.validate_parameters(parameters)
    if not input_text.strip():
        raise Invalid("input_text must not be empty", loc=("body", "input_text"))
    try:
        return await spec.run(input_text, valid, model=model)
    except (AgentRunError, UserError) as exc:
        raise AgentFailed(describe_failure(exc)) from exc


def describe_failure(exc: Exception) -> str:
    """A readable one-line reason for a model failure (no traceback, no response dump)."""
    if isinstance(exc, ModelTimeoutError | ModelRequestTimeout):
        message = "The model did not answer in time"
    elif isinstance(exc, ModelHTTPError):
        message = f"The model endpoint answered HTTP {exc.status_code}{_http_detail(exc.body)}"
    elif isinstance(exc, ModelConnectionError):
        message = f"Could not reach the model endpoint: {_first_line(exc.message)}"
    elif isinstance(exc, ModelAPIError):
        message = f"The model request failed: {_first_line(exc.message)}"
    elif isinstance(exc, UnexpectedModelBehavior):
        message = f"The model's output was not usable: {_first_line(exc.message)}"
    elif isinstance(exc, UsageLimitExceeded):
        message = f"The model needed too many requests: {_first_line(str(exc))}"
    elif isinstance(exc, UserError):
        message = f"The model is not configured correctly: {_first_line(str(exc))}"
    else:
        message = f"The model run failed: {_first_line(str(exc))}"
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


def _http_detail(body: object) -> str:
    """The provider's own error message, when its body carries one (an HTML error page is
    left out: it says nothing the status does not)."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        body = error.get("message") if isinstance(error, Mapping) else error
    if not isinstance(body, str) or not body.strip() or body.lstrip().startswith("<"):
        return ""
    return f": {_first_line(body)}"


def _first_line(text: str) -> str:
    """Provider and validation messages often run on over several lines of detail; the first
    says what happened."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no details"
