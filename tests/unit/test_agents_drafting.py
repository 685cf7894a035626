"""Offline content drafts: platforms, tones, variants and reviewer feedback."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.agents.drafting import TWITTER_LIMIT, DraftRequest, read_feedback, write_draft

SOURCE = (
    "Heat pumps move heat instead of burning fuel, so they use far less energy. "
    "Installation costs have fallen by a third since 2020. "
    "Several countries now subsidise replacing old gas boilers."
)
PLATFORMS = ("linkedin", "twitter", "instagram", "blog")
TONES = ("professional", "casual", "educational", "promotional")


def draft(**overrides: object) -> str:
    fields: dict[str, object] = {
        "topics": ["heat pumps"],
        "platform": "linkedin",
        "tone": "professional",
        "source": SOURCE,
    }
    fields.update(overrides)
    return write_draft(DraftRequest(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("platform", [pytest.param(p, id=p) for p in PLATFORMS])
@pytest.mark.parametrize("tone", [pytest.param(t, id=t) for t in TONES])
def test_a_draft_is_about_its_topic(platform: str, tone: str) -> None:
    text = draft(platform=platform, tone=tone)
    assert "heat pump" in text.lower()
    if platform == "twitter":
        assert len(text) <= TWITTER_LIMIT


def test_points_come_from_the_source() -> None:
    text = draft()
    assert any(sentence in text for sentence in SOURCE.split(". "))


def test_without_source_points_come_from_the_topics() -> None:
    text = draft(topics=["composting", "urban gardens"], source="")
    assert "composting" in text.lower()
    assert "urban gardens" in text.lower()


@pytest.mark.parametrize("platform", [pytest.param(p, id=p) for p in PLATFORMS])
def test_five_variants_are_five_different_drafts(platform: str) -> None:
    drafts = {draft(platform=platform, variant=variant) for variant in range(5)}
    assert len(drafts) == 5


def test_tones_sound_different() -> None:
    assert len({draft(tone=tone) for tone in TONES}) == len(TONES)


def test_blog_drafts_have_a_title_and_a_section_per_topic() -> None:
    text = draft(platform="blog", topics=["heat pumps", "insulation"])
    assert text.startswith("# ")
    assert "## Heat pumps" in text
    assert "## Insulation" in text


def test_linkedin_drafts_carry_hashtags_of_the_topics() -> None:
    assert "#HeatPumps" in draft(topics=["heat pumps"])


@pytest.mark.parametrize("platform", [pytest.param(p, id=p) for p in PLATFORMS])
def test_shorter_feedback_gives_a_shorter_draft(platform: str) -> None:
    previous = draft(platform=platform)
    revised = draft(
        platform=platform, feedback="Too long, make it shorter.", previous_draft=previous
    )
    assert len(revised) < len(previous)


def test_mention_feedback_adds_what_was_asked_for() -> None:
    previous = draft()
    revised = draft(feedback="Please mention the 2025 tax credit.", previous_draft=previous)
    assert "the 2025 tax credit" in revised
    assert "2025 tax credit" not in previous


def test_quoted_words_in_feedback_are_included() -> None:
    assert "Energy Star" in draft(feedback='Add "Energy Star" somewhere.')


def test_no_hashtags_feedback_drops_them() -> None:
    assert "#" in draft()
    assert "#" not in draft(feedback="No hashtags please.")


def test_tone_feedback_switches_the_tone() -> None:
    assert draft(feedback="Make it more casual.") == draft(tone="casual")


def test_a_revision_never_repeats_the_previous_draft() -> None:
    previous = draft()
    assert draft(feedback="Looks fine, try again.", previous_draft=previous) != previous


@pytest.mark.parametrize(
    ("feedback", "shorter", "longer", "hashtags", "tone", "mentions"),
    [
        pytest.param(None, False, False, True, None, (), id="none"),
        pytest.param("Shorter, please", True, False, True, None, (), id="shorter"),
        pytest.param("Needs more detail", False, True, True, None, (), id="longer"),
        pytest.param("Drop the hashtags", False, False, False, None, (), id="no-hashtags"),
        pytest.param("Less formal", False, False, True, None, (), id="less-formal-is-no-tone"),
        pytest.param("Sound more friendly", False, False, True, "casual", (), id="friendly"),
        pytest.param(
            "Mention our Berlin office, and include pricing.",
            False,
            False,
            True,
            None,
            ("our Berlin office", "pricing"),
            id="mentions",
        ),
        pytest.param("Add more hashtags", False, False, True, None, (), id="add-is-not-a-mention"),
    ],
)
def test_read_feedback(
    feedback: str | None,
    shorter: bool,
    longer: bool,
    hashtags: bool,
    tone: str | None,
    mentions: tuple[str, ...],
) -> None:
    edits = read_feedback(feedback)
    assert (edits.shorter, edits.longer, edits.hashtags, edits.tone, edits.mentions) == (
        shorter,
        longer,
        hashtags,
        tone,
        mentions,
    )


topic = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz "), min_size=1, max_size=60)


@given(
    topics=st.lists(topic.map(str.strip).filter(bool), min_size=1, max_size=5),
    source=st.text(max_size=600),
    tone=st.sampled_from(TONES),
    variant=st.integers(min_value=0, max_value=50),
    feedback=st.none() | st.text(max_size=200),
)
def test_tweets_always_fit(
    topics: list[str], source: str, tone: str, variant: int, feedback: str | None
) -> None:
    text = draft(
        topics=topics,
        source=source,
        platform="twitter",
        tone=tone,
        variant=variant,
        feedback=feedback,
    )
    assert 0 < len(text) <= TWITTER_LIMIT
