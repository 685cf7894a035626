"""The offline model's algorithms on fixed texts, and their properties on any text."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.agents.offline import STREAM_CHUNK_WORDS, chunks, classify_text, summarize_text
from tandem.agents.text import split_sentences

REPORT = (
    "Our quarterly revenue grew by 12 percent, driven mostly by the new subscription plans. "
    "Customer churn fell to its lowest level in two years. "
    "The support team resolved tickets faster thanks to the new triage process. "
    "However, hardware costs rose sharply because of supply chain delays. "
    "The board approved a plan to diversify suppliers next year. "
    "Employees will get a new benefits package in March. "
    "Revenue from subscription plans is expected to keep growing."
)
STORM = (
    "A storm crossed the northern coast on Monday night. "
    "Winds above 120 km/h knocked down trees and power lines in three towns. "
    "About forty thousand homes lost power for most of Tuesday. "
    "Rail services were suspended while crews cleared the tracks. "
    "The storm weakened over land and moved east by Wednesday morning. "
    "Power companies said most homes would be reconnected within two days."
)
LABELS = ["technical support", "billing", "sales", "shipping"]


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    remaining = iter(whole)
    return all(any(item == candidate for candidate in remaining) for item in part)


@pytest.mark.parametrize(
    "text", [pytest.param(REPORT, id="report"), pytest.param(STORM, id="storm")]
)
def test_a_summary_is_shorter_and_made_of_the_texts_sentences(text: str) -> None:
    summary = summarize_text(text)
    sentences = split_sentences(text)
    assert 1 <= len(summary) < len(sentences)
    assert is_subsequence(summary, sentences)
    assert len(" ".join(summary)) < len(text)


def test_different_texts_give_different_summaries() -> None:
    assert summarize_text(REPORT) != summarize_text(STORM)


def test_the_summary_keeps_the_recurring_theme() -> None:
    # Revenue and subscription plans come up twice; churn, costs and benefits only once.
    summary = " ".join(summarize_text(REPORT)).lower()
    assert "subscription plans" in summary


@pytest.mark.parametrize("max_words", [pytest.param(n, id=f"{n}-words") for n in (5, 15, 30, 60)])
def test_max_words_bounds_the_summary(max_words: int) -> None:
    summary = summarize_text(STORM, max_words=max_words)
    assert summary
    assert len(" ".join(summary).split()) <= max_words


def test_a_sentence_longer_than_the_budget_is_cut_and_marked() -> None:
    (summary,) = summarize_text(
        "A rather long single sentence about nothing much at all.", max_words=4
    )
    assert summary == "A rather long single…"


def test_near_duplicate_sentences_are_not_both_taken() -> None:
    text = (
        "The bridge will close for repairs in May. "
        "The bridge will close for repairs in May! "
        "Traffic will be diverted through the old town. "
        "Buses keep their usual routes. "
        "Cyclists can still use the bridge. "
        "Repairs should take six weeks."
    )
    summary = summarize_text(text)
    assert len(summary) == 2
    assert sum("bridge will close" in sentence for sentence in summary) == 1


def test_nothing_to_summarise() -> None:
    assert summarize_text("   ") == []


sentence_text = st.lists(
    st.text(alphabet=st.sampled_from("abcdefgh "), min_size=1, max_size=30).map(
        lambda words: words.strip().capitalize() or "Word"
    ),
    min_size=1,
    max_size=12,
).map(lambda sentences: " ".join(f"{sentence}." for sentence in sentences))


@given(sentence_text)
def test_summary_sentences_are_input_sentences_in_input_order(text: str) -> None:
    summary = summarize_text(text)
    assert summary
    assert is_subsequence(summary, split_sentences(text))


@given(sentence_text, st.integers(min_value=1, max_value=40))
def test_summary_never_exceeds_max_words(text: str, max_words: int) -> None:
    assert len(" ".join(summarize_text(text, max_words=max_words)).split()) <= max_words


@pytest.mark.parametrize(
    ("text", "label"),
    [
        pytest.param(
            "Hello, I was charged twice on my last invoice and I want a refund for the "
            "duplicate payment.",
            "billing",
            id="invoice-complaint",
        ),
        pytest.param(
            "The app crashes with an error every time I try to log in since the update.",
            "technical support",
            id="crash",
        ),
        pytest.param(
            "My package still has not arrived and the tracking number shows no delivery.",
            "shipping",
            id="late-parcel",
        ),
        pytest.param(
            "We are interested in a demo and a quote for an enterprise license.",
            "sales",
            id="quote",
        ),
    ],
)
def test_classifier_picks_the_fitting_label(text: str, label: str) -> None:
    result = classify_text(text, LABELS)
    assert result.label == label
    assert max(result.scores, key=lambda name: result.scores[name]) == label


def test_labels_outside_the_lexicon_match_by_their_own_words() -> None:
    result = classify_text(
        "The garden needs watering and the roses need pruning.", ["kitchen", "garden"]
    )
    assert result.label == "garden"


def test_no_evidence_gives_even_scores_and_the_first_label() -> None:
    result = classify_text("Lorem ipsum dolor.", ["alpha", "beta"])
    assert result.label == "alpha"
    assert result.scores == {"alpha": 0.5, "beta": 0.5}


@given(
    st.text(max_size=200),
    st.lists(
        st.text(alphabet="abcdefghij ", min_size=1, max_size=12),
        min_size=2,
        max_size=6,
        unique=True,
    ),
)
def test_scores_cover_every_label_and_sum_to_one(text: str, labels: list[str]) -> None:
    result = classify_text(text, labels)
    assert result.label in labels
    assert set(result.scores) == set(labels)
    assert all(0 < score <= 1 for score in result.scores.values())
    assert sum(result.scores.values()) == pytest.approx(1, abs=1e-3)


@given(st.text())
def test_streamed_chunks_join_to_the_answer(text: str) -> None:
    assert "".join(chunks(text)) == text
    assert "".join(chunks(text, structured=True)) == text


def test_a_long_answer_streams_in_chunks_of_a_few_words() -> None:
    pieces = chunks(REPORT)
    assert len(pieces) == -(-len(REPORT.split()) // STREAM_CHUNK_WORDS)
    assert all(len(piece.split()) <= STREAM_CHUNK_WORDS for piece in pieces)
