"""Text features for story clustering: weighted terms and named entities.

Reports of one event by different outlets share few phrases but many salient
words and names (people, places, organisations, numbers such as "145 drones"),
so the features are folded, lightly stemmed terms plus entity tokens, with the
headline and lead weighted above the rest of the body.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from monitor.stories.normalise import fold

_STOPWORD_TEXT = """
a about above after again against all also am an and any are aren as at be because been before
being below between both but by can cannot could couldn did didn do does doesn doing don down
during each few for from further had hadn has hasn have haven having he her here hers herself him
himself his how i if in into is isn it its itself just let ll me more most mustn my myself no nor
not now of off on once only or other ought our ours ourselves out over own re same shan she
should shouldn so some such than that the their theirs them themselves then there these they
this those through to too under until up ve very was wasn we were weren what when where which
while who whom why will with won would wouldn you your yours yourself yourselves
said says say saying told tells according reported reports report reporting
new news one two three first last year years week weeks day days time times today yesterday
tomorrow monday tuesday wednesday thursday friday saturday sunday morning evening night
mr mrs ms dr via per may might must shall us get got make made many much well still even
like since around amid across however although though yet already another back way whether
including include includes part called call calls people percent number set took take
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[^\W_]+")
_ENTITY = re.compile(
    r"\b(?:[A-Z][\w’'\-]*[a-z][\w’'\-]*|[A-Z]{2,}[a-z]?)(?:\s+(?:of\s+|de\s+|al-)?"
    r"(?:[A-Z][\w’'\-]*[a-z][\w’'\-]*|[A-Z]{2,}))*")
_NUMBER_PHRASE = re.compile(r"\b(\d[\d,.]*)\s+([A-Za-z]{3,})")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\"“”]\s+|\n)$")

TITLE_WEIGHT = 3.0
"""A headline names the event; it counts three times a body word."""
LEAD_WEIGHT = 2.0
"""The lead (first LEAD_WORDS words) says who, what, where; later text drifts."""
LEAD_WORDS = 60
BODY_WORDS = 400
"""Words beyond this are ignored: background paragraphs add noise and cost."""
ENTITY_WEIGHT = 0.5
"""Full names and "number noun" phrases: extra evidence on top of their words."""
NAME_WEIGHT = 0.6
"""Names say who, not what happened: the same people recur across a week's events."""


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A deliberately light English stemmer: plurals and common verb endings.

    Aggressive stemmers conflate words that matter for events (e.g. "strike"
    and "striker"); this only folds inflections that never change the topic.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ying", "y")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + repl
    if word.endswith("ing") and len(word) > 6:
        word = word[:-3]
        return word[:-1] if len(word) > 3 and word[-1] == word[-2] else word
    if word.endswith("ed") and len(word) > 5:
        word = word[:-2]
        return word[:-1] if len(word) > 3 and word[-1] == word[-2] else word
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 4:
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Folded content words of `text` (stopwords and 1-letter tokens dropped)."""
    return [t for t in _WORD.findall(fold(text)) if len(t) > 1 and t not in STOPWORDS]


def terms(text: str) -> list[str]:
    """Folded, stemmed content words of `text`."""
    return [stem(w) for w in words(text)]


def _is_headline_case(text: str) -> bool:
    """Title Case Headlines capitalise every word, so capitals say nothing there."""
    caps = [w for w in text.split() if w[:1].isalpha() and len(w) > 3]
    return len(caps) >= 3 and sum(w[0].isupper() for w in caps) > 0.7 * len(caps)


def _names(text: str) -> list[list[str]]:
    """Capitalised names as lists of folded words.

    A single capitalised word at the start of a sentence is ignored: it is
    usually just a capitalised common word.
    """
    if _is_headline_case(text):
        return []
    out = []
    for match in _ENTITY.finditer(text):
        found = words(match.group(0))
        if found and (len(found) > 1 or not _SENTENCE_START.search(
                text[max(0, match.start() - 3):match.start()] or "\n")):
            out.append(found)
    return out


def entities(text: str, names: list[list[str]] | None = None) -> list[str]:
    """Multi-word names (`e:`) and "number noun" phrases such as "145 drones" (`n:`)."""
    found = _names(text) if names is None else names
    out = ["e:" + " ".join(name) for name in found if len(name) > 1]
    for number, noun in _NUMBER_PHRASE.findall(text):
        digits = number.replace(",", "").rstrip(".")
        if digits and fold(noun) not in STOPWORDS:
            out.append(f"n:{digits} {stem(fold(noun))}")
    return out


@dataclass(frozen=True)
class TermCounts:
    weights: dict[str, float]
    """Weighted raw frequency of each term and entity, before IDF."""
    names: frozenset[str]
    """Last word of each name (surname, "of Y" place): who and where the report is about."""


def term_counts(title: str, text: str) -> TermCounts:
    """Weighted raw frequencies of terms and entities.

    Headline and lead count more than the body. A word used as a name anywhere
    in the document counts at NAME_WEIGHT, so sharing only names (the same
    people, another day) weighs less than sharing what happened.
    """
    body = text.split(maxsplit=BODY_WORDS)[:BODY_WORDS]
    parts = ((title, TITLE_WEIGHT), (" ".join(body[:LEAD_WORDS]), LEAD_WEIGHT),
             (" ".join(body[LEAD_WORDS:]), 1.0))
    found = [(part, weight, _names(part)) for part, weight in parts if part]
    names = {stem(w) for _, _, part_names in found for name in part_names for w in name}
    counts: defaultdict[str, float] = defaultdict(float)
    for part, weight, part_names in found:
        for t in terms(part):
            counts[t] += weight * (NAME_WEIGHT if t in names else 1.0)
        for e in entities(part, part_names):
            counts[e] += weight * ENTITY_WEIGHT
    heads = frozenset(stem(name[-1]) for _, _, part_names in found for name in part_names)
    return TermCounts(dict(counts), heads)
