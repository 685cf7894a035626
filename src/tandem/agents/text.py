"""Plain-text building blocks of the offline model: tokens, sentences, stems.

Everything here is pure and deterministic: the same text always gives the same result, with
no model files or network, so the offline model can run anywhere and be tested exactly.
"""

import re
from collections import Counter
from collections.abc import Iterator

# The tokenizer. One token per run of word characters (letters, digits, underscore, in any
# script) and one per other non-space character, so "Don't panic!" is 5 tokens:
# Don ' t panic !. It is not a provider's BPE vocabulary: those split rare and long words into
# several pieces, so this count is lower than theirs on such text. It is stable, needs no
# vocabulary file, and grows with the text the way real counts do, which is what usage
# accounting needs from an offline model.
_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

# A sentence ends at . ! ? (possibly repeated, possibly followed by a closing quote or bracket)
# followed by whitespace, or at a blank line (headings and list items often have no full stop).
_BOUNDARY = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?P<space>\s+)|(?P<paragraph>\n[ \t]*\n\s*)"
)
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e"})

_STOPWORD_LIST = """a about above after again against all also am an and any are as at be
    because been before being below between both but by can could did do does doing down
    during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves i'm i've it's don't doesn't didn't can't won't isn't aren't wasn't
    we're they're you're get got one two us may might must shall"""
STOPWORDS = frozenset(_STOPWORD_LIST.split())

# Longest first, so "ments" wins over "s". A suffix is only removed when at least three
# letters remain, which keeps short words ("bus", "gas") whole.
_SUFFIXES = ("ingly", "edly", "ments", "ment", "ings", "ing", "ied", "ies", "ed", "es", "s", "ly")


def tokenize(text: str) -> list[str]:
    """Split text into the tokens usage is counted in (see the comment on `_TOKEN`)."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def words(text: str) -> list[str]:
    """The words of a text, lower-cased, apostrophes kept inside words ("don't")."""
    return [match.group().lower().replace("\u2019", "'") for match in _WORD.finditer(text)]


def stem(word: str) -> str:
    """A light suffix-stripper: "charged", "charges" and "charge" all become "charg".

    Far cruder than Porter's algorithm, and enough to let inflected forms of one word meet.
    """
    word = word.lower()
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def content_stems(text: str) -> list[str]:
    """The stems of a text's words, without stopwords and one-letter words, in text order."""
    return [stem(word) for word in words(text) if word not in STOPWORDS and len(word) > 1]


def split_sentences(text: str) -> list[str]:
    """The sentences of a text, each an exact (stripped) slice of it, in order."""
    return [text[start:end].strip() for start, end in _sentence_spans(text)]


def _sentence_spans(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group("space") is not None:
            if _is_false_boundary(text, start, match):
                continue
            end = match.start("space")
        else:
            end = match.start()
        if text[start:end].strip():
            yield start, end
        start = match.end()
    if text[start:].strip():
        yield start, len(text)


def _is_false_boundary(text: str, start: int, match: re.Match[str]) -> bool:
    """A full stop after an abbreviation or an initial, or one followed by a lower-case word
    ("approx. three"), does not end the sentence."""
    following = text[match.end() : match.end() + 1]
    if following.islower():
        return True
    before = text[start : match.start()].rsplit(maxsplit=1)
    last_word = before[-1].lower() if before else ""
    return text[match.start()] == "." and (
        last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())
    )


def top_keywords(text: str, count: int) -> list[str]:
    """The `count` most frequent content words of `text` (first spelling seen), ties in text
    order."""
    spelling: dict[str, str] = {}
    frequency: Counter[str] = Counter()
    for word in words(text):
        if word in STOPWORDS or len(word) <= 1 or word.isdigit():
            continue
        key = stem(word)
        spelling.setdefault(key, word)
        frequency[key] += 1
    ranked = sorted(spelling, key=lambda key: -frequency[key])  # stable: ties keep text order
    return [spelling[key] for key in ranked[:count]]
