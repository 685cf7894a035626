"""The console's word-level diff between revisions, and where a sign-in may send the browser."""

import pytest

from tandem.console.auth import _safe_next
from tandem.console.diff import Piece, drafts_diff, word_diff


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param("a b", "a b", [Piece("same", "a b")], id="unchanged"),
        pytest.param(
            "the old text",
            "the new text",
            [
                Piece("same", "the "),
                Piece("removed", "old"),
                Piece("added", "new"),
                Piece("same", " text"),
            ],
            id="one-word-replaced",
        ),
        pytest.param(
            "Post one",
            "Post one, now shorter",
            [Piece("same", "Post "), Piece("removed", "one"), Piece("added", "one, now shorter")],
            id="punctuation-is-part-of-the-word",
        ),
        pytest.param("", "new", [Piece("added", "new")], id="from-nothing"),
        pytest.param("gone", "", [Piece("removed", "gone")], id="to-nothing"),
        pytest.param(
            "line one\nline two",
            "line one\nline 2",
            [Piece("same", "line one\nline "), Piece("removed", "two"), Piece("added", "2")],
            id="whitespace-kept",
        ),
    ],
)
def test_word_diff(before: str, after: str, expected: list[Piece]) -> None:
    assert word_diff(before, after) == expected


def test_word_diff_reads_as_both_texts() -> None:
    before = "Remote work pays off when it is tied to a clear goal."
    after = "Remote work pays off, says the team, when tied to one clear goal!"
    pieces = word_diff(before, after)
    assert "".join(p.text for p in pieces if p.op != "added") == before
    assert "".join(p.text for p in pieces if p.op != "removed") == after


def test_drafts_are_paired_by_position_and_a_new_draft_is_all_added() -> None:
    diffs = drafts_diff(["one", "two"], ["one", "two!", "three"])
    assert diffs[0] == [Piece("same", "one")]
    assert diffs[1] == [Piece("removed", "two"), Piece("added", "two!")]
    assert diffs[2] == [Piece("added", "three")]
    assert drafts_diff([{"k": 1}], []) == [[Piece("removed", "{'k': 1}")]]


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [
        pytest.param("/ui/jobs?status=dead", "/ui/jobs?status=dead", id="a-console-page"),
        pytest.param("https://evil.example/ui/", "/ui/inbox", id="another-site"),
        pytest.param("//evil.example/ui/", "/ui/inbox", id="scheme-relative"),
        pytest.param("/ui//evil.example", "/ui/inbox", id="double-slash"),
        pytest.param("/api/v1/users", "/ui/inbox", id="not-the-console"),
        pytest.param(None, "/ui/inbox", id="nothing"),
    ],
)
def test_sign_in_only_sends_the_browser_to_a_console_page(asked: str | None, sent_to: str) -> None:
    assert _safe_next(asked) == sent_to
