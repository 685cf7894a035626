"""Built-in tasks."""

from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from tandem.jobs.registry import TaskContext, task

MAX_ECHO_SECONDS = 60


class EchoFailure(Exception):
    pass


class EchoPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    fail_times: int = Field(default=0, ge=0)
    will_fail: bool = False
    duration_seconds: float = Field(default=0, ge=0, le=MAX_ECHO_SECONDS)


@task(
    "echo",
    description=(
        "Returns its payload. `fail_times: n` fails the first n attempts, `will_fail: true` "
        f"fails every attempt, `duration_seconds` (at most {MAX_ECHO_SECONDS}) takes that long."
    ),
    payload_model=EchoPayload,
)
async def echo(context: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    options = EchoPayload.model_validate(payload)
    if options.duration_seconds:
        await anyio.sleep(options.duration_seconds)
    if options.will_fail:
        raise EchoFailure(f"echo told to fail (attempt {context.attempt})")
    if context.attempt <= options.fail_times:
        raise EchoFailure(
            f"echo told to fail {options.fail_times} times (attempt {context.attempt})"
        )
    return payload
