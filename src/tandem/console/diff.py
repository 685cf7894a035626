"""What changed between two revisions of the drafts, word by word (difflib)."""

import difflib
import re
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Literal

Op = Literal["same", "added", "removed"]
_TOKENS = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class Piece:
    op: Op
    text: str


def word_diff(before: str, after: str) -> list[Piece]:
    """`after` against `before` as runs of unchanged, removed and added words (whitespace
    kept, so the pieces read as the text)."""
    old, new = _TOKENS.findall(before), _TOKENS.findall(after)
    pieces: list[Piece] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pieces.append(Piece("same", "".join(old[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(Piece("removed", "".join(old[i1:i2])))
        if j2 > j1:
            pieces.append(Piece("added", "".join(new[j1:j2])))
    return pieces


def as_text(draft: Any) -> str:
    return draft if isinstance(draft, str) else str(draft)


def drafts_diff(before: list[Any], after: list[Any]) -> list[list[Piece]]:
    """One word diff per draft, the drafts paired by position."""
    return [
        word_diff(as_text(old) if old is not None else "", as_text(new) if new is not None else "")
        for old, new in zip_longest(before, after)
    ]
