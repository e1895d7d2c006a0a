"""Text features for story clustering: weighted terms and named entities.

Reports of one event by different outlets share few phrases but many salient
words and names (people, places, organisations, numbers such as "145 drones"),
so the features are folded, lightly stemmed terms plus entity tokens, with the
headline and lead weighted above the rest of the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import chain

from monitor.stories import nearcopy
from monitor.stories.memo import VOCABULARY, Memo
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
# A word boundary before the first capital or digit is written as a lookbehind after it
# ("not a word character before it"), so the regex engine can skip ahead to candidates.
_ENTITY = re.compile(
    r"[A-Z](?<!\w[A-Z])(?:[\w’'\-]*[a-z][\w’'\-]*|[A-Z]+[a-z]?)(?:\s+(?:of\s+|de\s+|al-)?"
    r"(?:[A-Z][\w’'\-]*[a-z][\w’'\-]*|[A-Z]{2,}))*")
_NUMBER_PHRASE = re.compile(r"(\d(?<!\w\d)[\d,.]*)\s+([A-Za-z]{3,})")
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


def stem(word: str) -> str:
    """A deliberately light English stemmer: plurals and common verb endings.

    Aggressive stemmers conflate words that matter for events (e.g. "strike"
    and "striker"); this only folds inflections that never change the topic.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ying", "y"), ("ches", "ch"),
                         ("shes", "sh"), ("xes", "x")):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            return word[: -len(suffix)] + repl
    if word.endswith("ing") and len(word) > 6:
        return _undouble(word[:-3])
    if word.endswith("ed") and len(word) > 5:
        return _undouble(word[:-2])
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 4:
        return word[:-1]
    return word


def _undouble(word: str) -> str:
    """"stopp" (stopped) → "stop", but "kill" (killed), "pass", "buzz" keep their pair,
    as in Porter's step 1b: their plain forms end in it too (kills, passes)."""
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        return word[:-1]
    return word


def _token_words(token: str) -> tuple[str, ...]:
    return tuple(t for t in _WORD.findall(fold(token)) if len(t) > 1 and t not in STOPWORDS)


def _capital(token: str) -> int:
    """2: a capitalised word, 1: another word, 0: too short or not a word to judge case by."""
    if len(token) > 3 and token[0].isalpha():
        return 2 if token[0].isupper() else 1
    return 0


Token = tuple[int, tuple[str, ...], bytes]
"""What a document needs of one whitespace-separated token: its `_capital` kind, its
folded, stemmed content words, and the SimHash hashes of its folded words
(`nearcopy.word_hashes`)."""


def _token(token: str) -> Token:
    return (_capital(token), tuple(map(_STEMS.__getitem__, _WORDS_OF[token])),
            nearcopy.word_hashes(token))


_WORDS_OF = Memo(_token_words, VOCABULARY)
_STEMS = Memo(stem, VOCABULARY)
_TOKENS: Memo[str, Token] = Memo(_token, VOCABULARY)
"""One lookup per token gives all of it: each lookup in a large memo is a cache miss."""


def _tokens(tokens: list[str]) -> list[Token]:
    return list(map(_TOKENS.__getitem__, tokens))


def words(text: str) -> list[str]:
    """Folded content words of `text` (stopwords and 1-letter tokens dropped).

    Folding and word boundaries never cross whitespace, so each token is
    analysed once (`_WORDS_OF`) and a text is the concatenation of its tokens.
    """
    return list(chain.from_iterable(map(_WORDS_OF.__getitem__, text.split())))


def terms(text: str) -> list[str]:
    """Folded, stemmed content words of `text`."""
    return [t for _, token_terms, _ in _tokens(text.split()) for t in token_terms]


def _is_headline_case(tokens: list[str]) -> bool:
    """Title Case Headlines capitalise every word, so capitals say nothing there."""
    return _headline_case(_tokens(tokens))


def _headline_case(found: list[Token]) -> bool:
    caps = capitalised = 0
    for kind, _, _ in found:
        if kind:
            caps += 1
            if kind == 2:
                capitalised += 1
    return caps >= 3 and capitalised > 0.7 * caps


def _names(text: str, found: list[Token]) -> list[list[str]]:
    """Capitalised names as lists of folded words (`found`: the tokens of `text`).

    A single capitalised word at the start of a sentence is ignored: it is
    usually just a capitalised common word.
    """
    if _headline_case(found):
        return []
    out = []
    for match in _ENTITY.finditer(text):
        name = words(match.group(0))
        if name and (len(name) > 1 or not _SENTENCE_START.search(
                text[max(0, match.start() - 3):match.start()] or "\n")):
            out.append(name)
    return out


def entities(text: str, names: list[list[str]] | None = None) -> list[str]:
    """Multi-word names (`e:`) and "number noun" phrases such as "145 drones" (`n:`)."""
    found = _names(text, _tokens(text.split())) if names is None else names
    out = ["e:" + " ".join(name) for name in found if len(name) > 1]
    for number, noun in _NUMBER_PHRASE.findall(text):
        digits = number.replace(",", "").rstrip(".")
        if digits and fold(noun) not in STOPWORDS:
            out.append(f"n:{digits} {_STEMS[fold(noun)]}")
    return out


@dataclass(frozen=True)
class TermCounts:
    weights: dict[str, float]
    """Weighted raw frequency of each term and entity, before IDF."""
    names: frozenset[str]
    """Last word of each name (surname, "of Y" place): who and where the report is about."""


Analysis = tuple[TermCounts, int | None]
"""What `analyse` gives: term counts and SimHash."""


def analyse(title: str, text: str) -> Analysis:
    """Weighted raw frequencies of terms and entities, and the SimHash (`nearcopy.of_words`).

    Headline and lead count more than the body. A word used as a name anywhere
    in the document counts at NAME_WEIGHT, so sharing only names (the same
    people, another day) weighs less than sharing what happened. Each token is
    looked up once (`_TOKENS`) for all of it, its SimHash word hashes included.
    """
    tokens = text.split()
    found = _tokens(tokens)
    heading = title.split()
    heading_found = _tokens(heading)
    simhash = nearcopy.of_words(b"".join(token_hashes for _, _, token_hashes in heading_found),
                                b"".join(token_hashes for _, _, token_hashes in found))
    body, body_found = tokens[:BODY_WORDS], found[:BODY_WORDS]
    lead, rest = body[:LEAD_WORDS], body[LEAD_WORDS:]
    parts: list[tuple[str, list[Token], float]] = []
    if heading:
        parts.append((title, heading_found, TITLE_WEIGHT))
    if lead:
        parts.append((" ".join(lead), body_found[:LEAD_WORDS], LEAD_WEIGHT))
    if rest:
        parts.append((" ".join(rest), body_found[LEAD_WORDS:], 1.0))
    part_names = [_names(part, part_found) for part, part_found, _ in parts]
    names = {_STEMS[w] for found_names in part_names for name in found_names for w in name}
    counts: dict[str, float] = {}
    for (part, part_found, weight), found_names in zip(parts, part_names, strict=True):
        named = weight * NAME_WEIGHT
        for _, token_terms, _ in part_found:
            for t in token_terms:
                counts[t] = counts.get(t, 0.0) + (named if t in names else weight)
        entity = weight * ENTITY_WEIGHT
        for e in entities(part, found_names):
            counts[e] = counts.get(e, 0.0) + entity
    heads = frozenset(_STEMS[name[-1]] for found_names in part_names for name in found_names)
    return TermCounts(counts, heads), simhash
