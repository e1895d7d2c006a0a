"""Per-token analysis: the memoised, token-by-token paths give what whole-text processing gives.

Features, SimHash and text cleaning analyse each whitespace-separated token once
and concatenate; these tests hold them to the straightforward definitions on
text where folding is tricky (compatibility forms that decompose to a space,
combining marks, non-ASCII whitespace, case folding that changes length).
"""

from __future__ import annotations

import hashlib
import re

import pytest

from monitor.stories import features, nearcopy
from monitor.stories.memo import Memo
from monitor.stories.normalise import clean_text, content_hash, fold

TEXTS = [
    "",
    "   ",
    "Drones struck Kyiv overnight, officials said.",
    "145 drones and 1,200.5 tonnes; 3 km; x1 9a NATO's U.S.-led talks",
    "Ukraine’s “energy” grid — hit again: Zelenskyy met Rutte of NATO in al-Quds",
    "ÉLYSÉE Straße ΣΟΦΟΣ İstanbul ﬁnance ½ ² Ⅻ ١٢٣",
    "e\u0301te\u0301 cafe\u0301\u0308 na\u00efve",
    "a\u00a8b \u00b4x y\u00a8 \u00a8 \u2100 word",
    "non\u00a0breaking\u3000ideographic\u2028line\x1cfile\u2009thin\u200bzero",
    "Line one\n\n  Line   two\r\nthree\tfour\x0bfive\x0csix",
    "The Minister of Defence De Gaulle and al-Assad met McDonald O'Brien",
    "UN WHO EU NATOs ABc Abc-Def ’Tis 'Quoted' -Dash",
    "under_score _lead trail_ a_b 12_34",
    "Title Case Headline About Many Things Here",
]


def _reference_words(text: str) -> list[str]:
    return [t for t in re.findall(r"[^\W_]+", fold(text))
            if len(t) > 1 and t not in features.STOPWORDS]


def _reference_headline_case(text: str) -> bool:
    caps = [w for w in text.split() if w[:1].isalpha() and len(w) > 3]
    return len(caps) >= 3 and sum(w[0].isupper() for w in caps) > 0.7 * len(caps)


def _reference_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


@pytest.mark.parametrize("text", TEXTS)
def test_token_by_token_words_equal_whole_text_words(text: str) -> None:
    assert features.words(text) == _reference_words(text)
    assert features.terms(text) == [features.stem(w) for w in _reference_words(text)]


@pytest.mark.parametrize("text", TEXTS)
def test_headline_case_from_tokens(text: str) -> None:
    assert features._is_headline_case(text.split()) == _reference_headline_case(text)


@pytest.mark.parametrize("text", TEXTS)
def test_simhash_words_are_the_folded_words(text: str) -> None:
    hashes = b"".join(map(nearcopy.word_hashes, text.split()))
    assert [int.from_bytes(hashes[k:k + 8], "little") for k in range(0, len(hashes), 8)] == [
        _reference_hash(w) for w in fold(text).split()]


@pytest.mark.parametrize("text", TEXTS)
def test_whitespace_collapse_matches_the_regex_definition(text: str) -> None:
    lines = (re.sub(r"\s+", " ", line).strip() for line in text.splitlines())
    assert clean_text(text) == "\n".join(line for line in lines if line)
    folded = re.sub(r"\s+", " ", fold(f"Title\n{text}")).strip()
    assert content_hash("Title", text) == hashlib.sha256(folded.encode()).hexdigest()


ENTITY_WITH_BOUNDARY = re.compile(
    r"\b(?:[A-Z][\w’'\-]*[a-z][\w’'\-]*|[A-Z]{2,}[a-z]?)(?:\s+(?:of\s+|de\s+|al-)?"
    r"(?:[A-Z][\w’'\-]*[a-z][\w’'\-]*|[A-Z]{2,}))*")
NUMBER_WITH_BOUNDARY = re.compile(r"\b(\d[\d,.]*)\s+([A-Za-z]{3,})")


@pytest.mark.parametrize("text", [*TEXTS, "x145 drones", "a1 B2 Cc _Dd 9Ee", "ÀBc Def", "12 abc"])
def test_lookbehind_patterns_match_the_word_boundary_patterns(text: str) -> None:
    found = [(m.start(), m.group(0)) for m in features._ENTITY.finditer(text)]
    assert found == [(m.start(), m.group(0)) for m in ENTITY_WITH_BOUNDARY.finditer(text)]
    assert features._NUMBER_PHRASE.findall(text) == NUMBER_WITH_BOUNDARY.findall(text)


def test_memo_computes_once_and_stays_bounded() -> None:
    calls: list[str] = []

    def make(key: str) -> int:
        calls.append(key)
        return len(key)

    memo = Memo(make, limit=3)
    assert [memo[k] for k in ("a", "bb", "a", "ccc")] == [1, 2, 1, 3]
    assert calls == ["a", "bb", "ccc"]
    assert memo["dddd"] == 4 and len(memo) == 1  # full: emptied, then refilled
    assert memo["a"] == 1 and calls[-1] == "a"


@pytest.mark.parametrize("forms", [
    ("kill", "kills", "killed", "killing"), ("pass", "passes", "passed", "passing"),
    ("call", "calls", "called"), ("fall", "falls", "falling"),
    ("press", "presses", "pressed"), ("miss", "misses", "missed"),
    ("stop", "stops", "stopped", "stopping"), ("plan", "plans", "planned", "planning"),
    ("city", "cities"), ("fly", "flies", "flying"), ("strike", "strikes"),
    ("launch", "launches", "launched"), ("crash", "crashes", "crashed"), ("fix", "fixes"),
])
def test_stemmer_folds_inflections(forms: tuple[str, ...]) -> None:
    assert {features.stem(w) for w in forms} == {features.stem(forms[0])}


def test_stemmer_keeps_words_that_name_other_things_apart() -> None:
    assert features.stem("striker") != features.stem("strike")
    assert features.stem("news") == "news" and features.stem("bus") == "bus"
