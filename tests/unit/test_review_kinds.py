"""The review kind registry: how a kind plugs into decisions."""

import pytest

from tandem.content.service import ContentReview
from tandem.errors import Invalid
from tandem.review.kinds import (
    PREVIEW_CHARS,
    DecisionContext,
    ReviewKind,
    get_kind,
    kind_names,
    register_kind,
)


class NoEdits(ReviewKind):
    name = "no-edits-test"


def test_content_is_registered() -> None:
    assert "content" in kind_names()
    assert isinstance(get_kind("content"), ContentReview)


def test_an_unknown_kind_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="No review kind 'nope'"):
        get_kind("nope")


def test_a_kind_registers_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_kind(ContentReview())


@pytest.mark.anyio
async def test_a_kind_refuses_edit_unless_it_supports_it() -> None:
    context = DecisionContext(None, None, None, None, [], "shorter")  # type: ignore[arg-type]
    with pytest.raises(Invalid, match="edit is not allowed for no-edits-test threads") as error:
        await NoEdits().edit(context)
    assert error.value.loc == ["body", "decision"]
    assert (await NoEdits().approve(context)).final_content is None


@pytest.mark.parametrize(
    ("drafts", "preview"),
    [
        pytest.param([], "", id="no-drafts"),
        pytest.param(["Short post", "second"], "Short post", id="first-draft"),
        pytest.param(["x" * 500], "x" * (PREVIEW_CHARS - 1) + "…", id="cut"),
        pytest.param([{"swap": 1}], "{'swap': 1}", id="not-text"),
    ],
)
def test_preview_is_the_start_of_the_first_draft(drafts: list[object], preview: str) -> None:
    assert NoEdits().preview(drafts) == preview
