"""The offline model: a real pydantic-ai `Model` that does the agents' work locally.

With no endpoint configured, agents run on this model through the very same `Agent` objects
they use online. It reads the prompt envelope (see `envelope.py`), hands the task to the skill
registered for that agent, and answers as a model would: text, or a call of the output tool
when the agent wants structured output. The work is real and deterministic:

- summaries are extractive: sentences scored by the frequency of their content words;
- classification scores each label by lexical overlap of the text with the label's words,
  their stems and a small lexicon of related terms;
- content drafts fill tone and platform templates with the topics (see `drafting.py`).

Usage is counted with the tokenizer documented in `text.py`.
"""

import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    ModelResponseStreamEvent,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RequestUsage

from tandem.agents.envelope import Envelope, parse_prompt
from tandem.agents.text import content_stems, count_tokens, split_sentences, stem

OFFLINE_MODEL_NAME = "tandem-offline"

# What the offline model answers for one agent: (input_text, raw parameters) -> the output as
# the agent expects it from a model (plain text, or JSON text for a structured output).
OfflineSkill = Callable[[str, Mapping[str, Any]], str]


# --- Summaries -------------------------------------------------------------------------------


def summarize_text(
    text: str, *, max_words: int | None = None, max_sentences: int | None = None
) -> list[str]:
    """The sentences of an extractive summary of `text`, in the order they appear in it.

    Each sentence scores the summed document frequency of its distinct content stems, damped
    by the square root of its length so long sentences do not win by size alone; the opening
    sentence gets a small bonus (texts tend to lead with their point). The best sentences are
    taken while they fit the word budget, up to `max_sentences` (by default about a third of
    the sentences, at most eight); near-duplicates of a sentence already taken are skipped.
    When not even one sentence fits `max_words`, the best sentence is cut to `max_words` words
    and marked with "…".
    """
    sentences = split_sentences(text)
    if not sentences:
        return []
    stems = [content_stems(sentence) for sentence in sentences]
    frequency = Counter(stem for sentence in stems for stem in set(sentence))
    ranked = sorted(
        range(len(sentences)),
        key=lambda index: (-_sentence_score(index, stems[index], frequency), index),
    )
    target = max_sentences or max(1, min(8, round(len(sentences) / 3)))
    chosen: list[int] = []
    used_words = 0
    for index in ranked:
        length = len(sentences[index].split())
        if max_words is not None and used_words + length > max_words:
            continue
        if any(_overlap(stems[index], stems[other]) > 0.7 for other in chosen):
            continue
        chosen.append(index)
        used_words += length
        if len(chosen) == target:
            break
    if not chosen:
        assert max_words is not None  # without a budget the best sentence is always taken
        return [" ".join(sentences[ranked[0]].split()[:max_words]) + "…"]
    return [sentences[index] for index in sorted(chosen)]


def _sentence_score(index: int, stems: Sequence[str], frequency: Counter[str]) -> float:
    if not stems:
        return 0.0
    score = sum(frequency[stem] for stem in set(stems)) / math.sqrt(len(stems))
    return score * (1.2 if index == 0 else 1.0)


def _overlap(left: Sequence[str], right: Sequence[str]) -> float:
    a, b = set(left), set(right)
    return len(a & b) / len(a | b) if a | b else 1.0


# --- Classification --------------------------------------------------------------------------

# Related terms for labels people commonly use. A label outside this lexicon is still matched
# by its own words and their stems; inside it, "billing" also hears "invoice" and "refund".
_LEXICON: dict[str, str] = {
    "billing": "invoice bill charge payment pay paid refund price cost fee subscription "
    "receipt credit card overcharge money plan renewal tax vat",
    "technical": "error bug crash broken fail failure login password install slow outage "
    "down server api app website page timeout exception update version",
    "support": "help issue problem question assist trouble fix resolve",
    "shipping": "ship shipment deliver delivery package parcel track tracking courier "
    "arrive arrival late address dispatch order",
    "sales": "buy purchase quote demo pricing discount trial interested upgrade enterprise "
    "license offer deal contract",
    "account": "login password profile email username sign register signup delete "
    "settings access locked",
    "complaint": "unhappy disappointed terrible bad angry worst complain poor unacceptable "
    "frustrated rude",
    "praise": "great love excellent thank thanks amazing happy awesome wonderful good "
    "fantastic helpful",
    "positive": "great love excellent thank amazing happy awesome wonderful good fantastic pleased",
    "negative": "bad terrible hate awful poor disappointed angry worst broken unhappy",
    "spam": "free winner win click prize offer unsubscribe casino lottery congratulations claim",
    "urgent": "urgent asap immediately critical emergency now blocker outage",
    "feature": "feature request suggest suggestion wish idea add improvement would",
    "cancellation": "cancel cancellation terminate close unsubscribe stop quit leave",
    "refund": "refund return money back reimburse chargeback",
    "returns": "return exchange refund send back wrong size damaged",
    "security": "hack breach phishing password leak vulnerability suspicious fraud",
    "marketing": "campaign newsletter promotion brand audience social ad advertising",
    "legal": "contract lawyer gdpr privacy compliance terms lawsuit policy",
    "hr": "hire hiring salary vacation leave employee job interview benefits payroll",
}
_RELATED: dict[str, frozenset[str]] = {
    stem(label): frozenset(content_stems(terms)) for label, terms in _LEXICON.items()
}
_LABEL_WEIGHT = 1.0  # the label's own words
_RELATED_WEIGHT = 0.6  # lexicon terms
_PREFIX_WEIGHT = 0.5  # a text stem sharing a 5-letter prefix with a label stem
_SMOOTHING = 0.05  # keeps every score above zero, and gives uniform scores to no evidence


@dataclass(frozen=True)
class LabelScores:
    label: str
    scores: dict[str, float]


def classify_text(text: str, labels: Sequence[str]) -> LabelScores:
    """The label of `labels` the text is most similar to, and a score for each (summing to 1).

    A label's evidence is the number of text stems matching its own stems (weight 1), related
    lexicon terms (0.6) or sharing a 5-letter prefix with a label stem (0.5), divided by the
    square root of the text's length. Scores are the smoothed shares of that evidence. Ties
    go to the label listed first.
    """
    text_stems = Counter(content_stems(text))
    length = math.sqrt(sum(text_stems.values()) or 1)
    evidence = [_label_evidence(text_stems, label) / length for label in labels]
    total = sum(evidence) + _SMOOTHING * len(labels)
    scores = {
        label: round((value + _SMOOTHING) / total, 4)
        for label, value in zip(labels, evidence, strict=True)
    }
    best = max(range(len(labels)), key=lambda index: (evidence[index], -index))
    return LabelScores(label=labels[best], scores=scores)


def _label_evidence(text_stems: Counter[str], label: str) -> float:
    own = set(content_stems(label)) or {stem(label)}
    related: set[str] = set()
    for part in own:
        related |= _RELATED.get(part, frozenset())
    evidence = 0.0
    for text_stem, count in text_stems.items():
        if text_stem in own:
            weight = _LABEL_WEIGHT
        elif text_stem in related:
            weight = _RELATED_WEIGHT
        elif len(text_stem) >= 5 and any(text_stem[:5] == part[:5] for part in own):
            weight = _PREFIX_WEIGHT
        else:
            continue
        evidence += weight * count
    return evidence


# --- The model -------------------------------------------------------------------------------


class OfflineModel(Model):
    """Answers agent prompts locally through the skill registered for each agent id."""

    # There is no provider-side system prompt for pydantic-ai to explain its framing in.
    _announces_lookalike_notes = False

    def __init__(self, skills: Mapping[str, OfflineSkill], *, model_name: str = OFFLINE_MODEL_NAME):
        super().__init__()
        self._skills = dict(skills)
        self._model_name = model_name

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def system(self) -> str:
        return "tandem"

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        _, parameters = self.prepare_request(model_settings, model_request_parameters)
        return self._answer(messages, parameters)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """The same answer as `request`, handed out in chunks of a few words (streamed runs)."""
        _, parameters = self.prepare_request(model_settings, model_request_parameters)
        yield OfflineStreamedResponse(
            model_request_parameters=parameters, answer=self._answer(messages, parameters)
        )

    def _answer(
        self, messages: list[ModelMessage], parameters: ModelRequestParameters
    ) -> ModelResponse:
        envelope = _find_envelope(messages)
        if envelope is None:
            raise UnexpectedModelBehavior("The offline model only answers Tandem agent prompts")
        skill = self._skills.get(envelope.task)
        if skill is None:
            raise UnexpectedModelBehavior(f"The offline model cannot run agent '{envelope.task}'")
        try:
            answer = skill(envelope.input_text, envelope.parameters)
        except ValueError as exc:
            raise UnexpectedModelBehavior(f"The offline model could not answer: {exc}") from exc
        part: ModelResponsePart
        if parameters.output_tools and not parameters.allow_text_output:
            part = ToolCallPart(parameters.output_tools[0].name, answer)
        else:
            part = TextPart(answer)
        usage = RequestUsage(
            input_tokens=sum(count_tokens(text) for text in _texts_read(messages)),
            output_tokens=count_tokens(answer),
        )
        return ModelResponse(
            parts=[part], usage=usage, model_name=self._model_name, provider_name=self.system
        )


STREAM_CHUNK_WORDS = 3  # words per streamed text chunk
STREAM_CHUNK_CHARS = 24  # characters per streamed chunk of a tool call's JSON arguments
_WORD = re.compile(r"\s*\S+\s*")


def chunks(text: str, *, structured: bool = False) -> list[str]:
    """`text` in the pieces a streamed answer hands out: a few words at a time (whitespace
    kept, so the pieces join to `text`), or fixed runs of characters for JSON."""
    if structured:
        return [text[i : i + STREAM_CHUNK_CHARS] for i in range(0, len(text), STREAM_CHUNK_CHARS)]
    words = _WORD.findall(text) or [text]
    pieces = [
        "".join(words[i : i + STREAM_CHUNK_WORDS]) for i in range(0, len(words), STREAM_CHUNK_WORDS)
    ]
    return pieces if "".join(pieces) == text else [text]


@dataclass
class OfflineStreamedResponse(StreamedResponse):
    """An offline answer as a stream: text deltas, or the output tool's arguments in pieces."""

    answer: ModelResponse = field(kw_only=True)
    _timestamp: datetime = field(default_factory=lambda: datetime.now(UTC), init=False)

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        self._usage = self.answer.usage
        for index, part in enumerate(self.answer.parts):
            if isinstance(part, TextPart):
                for piece in chunks(part.content):
                    for event in self._parts_manager.handle_text_delta(
                        vendor_part_id=index, content=piece
                    ):
                        yield event
            elif isinstance(part, ToolCallPart):
                for number, piece in enumerate(chunks(part.args_as_json_str(), structured=True)):
                    for event in self._parts_manager.handle_tool_call_delta_events(
                        vendor_part_id=index,
                        tool_name=part.tool_name if number == 0 else None,
                        args=piece,
                        tool_call_id=part.tool_call_id if number == 0 else None,
                    ):
                        yield event

    @property
    def model_name(self) -> str:
        return self.answer.model_name or OFFLINE_MODEL_NAME

    @property
    def provider_name(self) -> str:
        return "tandem"

    @property
    def provider_url(self) -> None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self._timestamp

    async def close_stream(self) -> None:
        """Nothing to close: the answer is already in memory."""


def _find_envelope(messages: Iterable[ModelMessage]) -> Envelope | None:
    """The agent's prompt. Not simply the first user part: pydantic-ai puts a note of its own
    before a prompt that contains text looking like its framing tags (e.g. "<system>")."""
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    envelope = parse_prompt(part.content)
                    if envelope is not None:
                        return envelope
    return None


def _texts_read(messages: Iterable[ModelMessage]) -> Iterator[str]:
    """Every piece of text the model is shown: instructions, prompts, earlier answers, retries."""
    for message in messages:
        if isinstance(message, ModelRequest) and message.instructions:
            yield message.instructions
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                yield part.args_as_json_str()
            elif isinstance(content := getattr(part, "content", None), str):
                yield content
            elif callable(model_response := getattr(part, "model_response", None)):
                yield str(model_response())
