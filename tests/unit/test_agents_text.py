"""The offline model's text building blocks: tokenizer, sentences, stems, keywords."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.agents.text import (
    content_stems,
    count_tokens,
    split_sentences,
    stem,
    tokenize,
    top_keywords,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        pytest.param("", [], id="empty"),
        pytest.param("Don't panic!", ["Don", "'", "t", "panic", "!"], id="apostrophe-and-bang"),
        pytest.param("3.5 million", ["3", ".", "5", "million"], id="numbers"),
        pytest.param("  spaced\tout\n", ["spaced", "out"], id="whitespace-is-not-a-token"),
        pytest.param("naïve café", ["naïve", "café"], id="unicode-letters"),
        pytest.param("snake_case", ["snake_case"], id="underscore-joins"),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens
    assert count_tokens(text) == len(tokens)


@given(st.text())
def test_count_tokens_matches_tokenize(text: str) -> None:
    assert count_tokens(text) == len(tokenize(text))


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        pytest.param("One. Two! Three?", ["One.", "Two!", "Three?"], id="three-ends"),
        pytest.param("No full stop", ["No full stop"], id="unterminated"),
        pytest.param(
            "Title\n\nThe body starts here.", ["Title", "The body starts here."], id="blank-line"
        ),
        pytest.param(
            "Mr. Smith arrived. He sat.", ["Mr. Smith arrived.", "He sat."], id="abbreviation"
        ),
        pytest.param(
            "It costs approx. three euros. Fine.",
            ["It costs approx. three euros.", "Fine."],
            id="lower-case-continues",
        ),
        pytest.param(
            'She said "stop." Then left.', ['She said "stop."', "Then left."], id="closing-quote"
        ),
        pytest.param("J. R. Tolkien wrote it.", ["J. R. Tolkien wrote it."], id="initials"),
        pytest.param("   \n\n  ", [], id="only-space"),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


@given(st.text(alphabet=st.sampled_from("ab .!?\n\"'"), max_size=80))
def test_sentences_are_ordered_slices_of_the_text(text: str) -> None:
    position = 0
    for sentence in split_sentences(text):
        assert sentence
        assert sentence == sentence.strip()
        found = text.find(sentence, position)
        assert found >= position
        position = found + len(sentence)


@pytest.mark.parametrize(
    "forms",
    [
        pytest.param(("charge", "charged", "charges", "charging"), id="charge"),
        pytest.param(("invoice", "invoices", "invoiced"), id="invoice"),
        pytest.param(("bill", "bills", "billing", "billed"), id="bill"),
        pytest.param(("payment", "payments"), id="payment"),
    ],
)
def test_inflections_share_a_stem(forms: tuple[str, ...]) -> None:
    assert len({stem(form) for form in forms}) == 1


def test_short_words_keep_their_ending() -> None:
    assert stem("bus") == "bus"
    assert stem("gas") == "gas"


def test_content_stems_drop_stopwords() -> None:
    assert content_stems("The invoices are in the system") == [stem("invoices"), stem("system")]


def test_top_keywords_by_frequency_then_text_order() -> None:
    text = "Solar panels cut bills. Solar farms need land. Panels need sun. Wind helps."
    assert top_keywords(text, 3) == ["solar", "panels", "need"]
