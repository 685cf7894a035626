"""Size limits of what a job carries: its payload (checked on submit, 422) and its result
(checked when the task returns; a larger one fails the attempt)."""

import json
from typing import Any

from tandem.errors import Invalid


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON, as it is stored."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def check_payload_size(payload: dict[str, Any], limit: int) -> None:
    if (size := json_size(payload)) > limit:
        raise Invalid(
            f"payload is {size} bytes as JSON; at most {limit} are accepted",
            loc=("body", "payload"),
        )


class ResultTooLarge(Exception):
    """A task returned more than TANDEM_JOB_MAX_RESULT_BYTES: the attempt fails."""


def check_result_size(result: Any, limit: int) -> None:
    if (size := json_size(result)) > limit:
        raise ResultTooLarge(f"result is {size} bytes as JSON; at most {limit} are kept")
