"""The one prompt format every agent sends, readable by a real model and by the offline one.

A real model reads the task, the parameters and the text like any structured prompt; the
offline model parses the same message back, so the same `Agent` runs online and offline with
no side channel between the agent and its model.

    <task>summarizer</task>
    <parameters>{"max_words": 40}</parameters>
    <input_text>
    ...the text, verbatim...
    </input_text>
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_HEAD = re.compile(r"<task>(?P<task>[a-z0-9][a-z0-9_-]*)</task>\n<parameters>")
_MIDDLE = "</parameters>\n<input_text>\n"
_TAIL = "\n</input_text>"


@dataclass(frozen=True)
class Envelope:
    task: str
    parameters: dict[str, Any]
    input_text: str


def render_prompt(task: str, parameters: Mapping[str, Any], input_text: str) -> str:
    # ensure_ascii=False keeps non-English parameters readable to the model.
    encoded = json.dumps(dict(parameters), ensure_ascii=False, sort_keys=True)
    return f"<task>{task}</task>\n<parameters>{encoded}{_MIDDLE}{input_text}{_TAIL}"


def parse_prompt(prompt: str) -> Envelope | None:
    """The envelope in `prompt`, or None when it is not one `render_prompt` wrote."""
    head = _HEAD.match(prompt)
    if head is None or not prompt.endswith(_TAIL):
        return None
    try:
        # raw_decode reads exactly one JSON value, so a parameter holding "</parameters>"
        # cannot cut the envelope short.
        parameters, end = json.JSONDecoder().raw_decode(prompt, head.end())
    except json.JSONDecodeError:
        return None
    if not isinstance(parameters, dict) or not prompt.startswith(_MIDDLE, end):
        return None
    input_text = prompt[end + len(_MIDDLE) : -len(_TAIL)]
    return Envelope(task=head.group("task"), parameters=parameters, input_text=input_text)
