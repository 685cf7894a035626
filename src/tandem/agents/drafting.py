"""Offline content drafts: tone and platform templates filled with the topics and the source.

A draft is assembled from a hook, a few points and a call to action. Points come from the
source text (its best sentences, by the extractive summariser), or, without one, from point
templates filled with the topics. `variant` picks different hooks, calls to action and
orderings, so a batch of drafts is not five copies of one; reviewer feedback is read for a few
plain instructions (shorter, longer, mention X, no hashtags, a tone) and applied.
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tandem.agents.offline import summarize_text
from tandem.agents.text import top_keywords

TWITTER_LIMIT = 280

_HOOKS: dict[str, tuple[str, ...]] = {
    "professional": (
        "What {topic} means for your team right now.",
        "A few things we have learned about {topic}.",
        "{Topic} is changing how teams work. Here is what matters.",
        "A practical look at {topic}.",
        "Why {topic} deserves a place on your roadmap.",
        "The case for taking {topic} seriously.",
    ),
    "casual": (
        "Okay, let's talk about {topic} for a sec.",
        "Hot take: {topic} is underrated.",
        "Been thinking a lot about {topic} lately.",
        "Quick one on {topic}.",
        "So, {topic}. Here's the deal.",
        "Nobody told me {topic} could be this fun.",
    ),
    "educational": (
        "New to {topic}? Start here.",
        "{Topic}, explained in a minute.",
        "How {topic} works, step by step.",
        "Common misconceptions about {topic}.",
        "What everyone should know about {topic}.",
        "A short guide to {topic}.",
    ),
    "promotional": (
        "Ready to get more out of {topic}?",
        "Big news for anyone working on {topic}.",
        "Make {topic} your advantage.",
        "{Topic}, done right.",
        "Stop struggling with {topic}.",
        "This is the {topic} upgrade you have been waiting for.",
    ),
}
_CALLS: dict[str, tuple[str, ...]] = {
    "professional": (
        "What is your experience with {topic}? I would like to hear it.",
        "Share this with someone who is working on {topic}.",
        "Follow for more on {topics}.",
        "Let us compare notes in the comments.",
    ),
    "casual": (
        "What do you think? Drop it below.",
        "Tag a friend who needs this.",
        "More on {topic} soon. Stay tuned!",
        "Agree? Disagree? Tell me.",
    ),
    "educational": (
        "Save this for later.",
        "Questions about {topic}? Ask in the comments.",
        "Follow along for more on {topics}.",
        "Share it with someone learning {topic}.",
    ),
    "promotional": (
        "Get started today.",
        "See how it works: link in the comments.",
        "Don't miss out: try it now.",
        "Reach out to learn more about {topic}.",
    ),
}
_POINTS: dict[str, tuple[str, ...]] = {
    "professional": (
        "{Topic} pays off when it is tied to a clear goal and a way to measure it.",
        "Small, steady steps with {topic} beat one big launch.",
        "The teams that do well with {topic} share what they learn.",
    ),
    "casual": (
        "Honestly, {topic} is easier than it looks once you start.",
        "The trick with {topic}? Keep it simple.",
        "{Topic} got way better once I stopped overthinking it.",
    ),
    "educational": (
        "{Topic} starts with the basics: know what problem it solves.",
        "A common mistake with {topic} is skipping the fundamentals.",
        "Practice {topic} on a small example before scaling up.",
    ),
    "promotional": (
        "{Topic} without the busywork: faster results, fewer headaches.",
        "Teams switching to a better {topic} setup see the difference in weeks.",
        "Everything you need for {topic}, in one place.",
    ),
}
_TONE_WORDS = {
    "professional": "professional|formal|serious|corporate",
    "casual": "casual|friendly|relaxed|informal|fun|playful",
    "educational": "educational|informative|instructive|explanatory",
    "promotional": "promotional|salesy|persuasive|punchy",
}
_SHORTER = re.compile(r"\b(shorter|shorten|concise|too long|trim|tighter|briefer|less text)\b")
_LONGER = re.compile(r"\b(longer|more detail|expand|elaborate|too short)\b")
_NO_HASHTAGS = re.compile(r"\b(no|without|drop|remove|skip)\s+(the\s+)?hashtags?\b")
_MENTION = re.compile(
    r"\b(?:mention|include|add|reference|highlight|talk about)\s+(?P<what>[^.,;:!?\n]+)",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[\"“]([^\"”]+)[\"”]")
_NOT_MENTIONS = re.compile(r"\b(hashtags?|emojis?|more|detail|details)\b")


@dataclass(frozen=True)
class Edits:
    """What a reviewer's feedback asks for, as far as the offline writer understands it."""

    shorter: bool = False
    longer: bool = False
    hashtags: bool = True
    tone: str | None = None
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DraftRequest:
    topics: Sequence[str]
    platform: str
    tone: str
    source: str = ""  # the run's input text: material the points are drawn from
    brief: str | None = None
    feedback: str | None = None
    previous_draft: str | None = None
    variant: int = 0


def read_feedback(feedback: str | None) -> Edits:
    if not feedback:
        return Edits()
    lowered = feedback.lower()
    # "less formal" or "not salesy" names a tone to move away from, not one to take.
    tone = next(
        (
            tone
            for tone, pattern in _TONE_WORDS.items()
            if re.search(rf"(?<!less )(?<!not )\b({pattern})", lowered)
        ),
        None,
    )
    mentions = [match.group(1).strip() for match in _QUOTED.finditer(feedback)]
    for match in _MENTION.finditer(feedback):
        phrase = " ".join(match.group("what").split()[:6])
        if phrase and not _NOT_MENTIONS.search(phrase.lower()) and phrase not in mentions:
            mentions.append(phrase)
    return Edits(
        shorter=bool(_SHORTER.search(lowered)),
        longer=bool(_LONGER.search(lowered)),
        hashtags=not _NO_HASHTAGS.search(lowered),
        tone=tone,
        mentions=tuple(mentions),
    )


def write_draft(request: DraftRequest) -> str:
    """One post for `request.platform`; a draft identical to the previous one is re-rolled."""
    draft = _compose(request, request.variant)
    if request.previous_draft is not None and draft == request.previous_draft.strip():
        draft = _compose(request, request.variant + 1)
    return draft


def _compose(request: DraftRequest, variant: int) -> str:
    edits = read_feedback(request.feedback)
    tone = edits.tone or request.tone
    material = "\n\n".join(text for text in (request.source, request.brief or "") if text)
    topics = list(request.topics) or top_keywords(material, 3) or ["this"]
    seed = int.from_bytes(hashlib.sha256("|".join(topics).encode()).digest()[:4], "big")
    lead = topics[variant % len(topics)]

    def fill(template: str) -> str:
        return template.format(topic=lead, Topic=_capitalise(lead), topics=_join(topics))

    hooks, calls = _HOOKS[tone], _CALLS[tone]
    hook = fill(hooks[(seed + variant) % len(hooks)])
    call = fill(calls[(seed + 3 * variant) % len(calls)])
    wanted = 5 if edits.longer else 3
    at_least = len(topics) if request.platform == "blog" else min(wanted, max(len(topics), 2))
    points = _points(material, topics, tone, variant, count=wanted, at_least=at_least)
    if edits.shorter:
        points = points[:1]
    already = " ".join([hook, *points, call]).lower()
    points += [
        f"Worth a mention: {mention}."
        for mention in edits.mentions
        if mention.lower() not in already
    ]
    tags = _hashtags(topics, material) if edits.hashtags else []

    shorten_to = _shorter_limit(request.previous_draft) if edits.shorter else None
    if request.platform == "twitter":
        draft = _tweet(hook, points, call, tags[:3], limit=min(TWITTER_LIMIT, shorten_to or 280))
    elif request.platform == "blog":
        draft = _blog(hook, points, call, topics)
    else:
        bullet = "→" if request.platform == "linkedin" else "•"
        body = "\n".join(f"{bullet} {point}" for point in points)
        limit = 5 if request.platform == "linkedin" else 10
        draft = "\n\n".join(part for part in (hook, body, call, " ".join(tags[:limit])) if part)
    return draft if shorten_to is None else _cut(draft, shorten_to)


def _points(
    material: str, topics: Sequence[str], tone: str, variant: int, *, count: int, at_least: int
) -> list[str]:
    """Up to `count` sentences of the source material (of six words or more), topped up to
    `at_least` with point templates filled with the topics; rotated by `variant` so drafts
    lead with different points."""
    points = [
        sentence
        for sentence in summarize_text(material, max_sentences=count)
        if len(sentence.split()) >= 6
    ]
    templates, found = _POINTS[tone], len(points)
    for index in range(max(at_least - found, 0)):
        subject = topics[(found + index) % len(topics)]
        template = templates[index % len(templates)]
        points.append(template.format(topic=subject, Topic=_capitalise(subject)))
    shift = variant % len(points)
    return points[shift:] + points[:shift]


def _tweet(hook: str, points: Sequence[str], call: str, tags: Sequence[str], *, limit: int) -> str:
    """The richest tweet within `limit` characters: parts are dropped from the least important
    (extra points, the call to action, hashtags), and only then is the text cut."""
    mentions = [point for point in points if point.startswith("Worth a mention:")]
    main = [point for point in points if point not in mentions][:1]
    candidates = (
        [hook, *mentions, *main, call, *tags],
        [hook, *mentions, *main, *tags[:1]],
        [hook, *mentions, *main],
        [hook, *mentions],
    )
    for parts in candidates:
        text = " ".join(parts)
        if len(text) <= limit:
            return text
    return _cut(" ".join(candidates[-1]), limit)


def _blog(hook: str, points: Sequence[str], call: str, topics: Sequence[str]) -> str:
    title = f"# {_capitalise(_join(topics))}"
    sections = [title, hook]
    for heading, point in zip(topics, points, strict=False):
        sections += [f"## {_capitalise(heading)}", point]
    if extra := points[len(topics) :]:
        sections += ["## One more thing", " ".join(extra)]
    return "\n\n".join([*sections, "## Wrapping up", call])


def _hashtags(topics: Sequence[str], material: str) -> list[str]:
    tags: list[str] = []
    # Topics first; the source's keywords only when they are words of some substance.
    keywords = [word for word in top_keywords(material, 5) if len(word) >= 5]
    for phrase in [*topics, *keywords[:3]]:
        tag = "#" + "".join(_capitalise(word) for word in re.findall(r"[^\W_]+", phrase))
        if len(tag) > 1 and tag.lower() not in (existing.lower() for existing in tags):
            tags.append(tag)
    return tags


def _shorter_limit(previous_draft: str | None) -> int | None:
    """Keep a "shorter" edit honest: at most about 70% of the previous draft's length."""
    if not previous_draft:
        return None
    return max(40, int(len(previous_draft.strip()) * 0.7))


def _cut(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, ending with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(maxsplit=1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,;:-") + "…"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
