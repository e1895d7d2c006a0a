"""Compile rule predicates into matchers over rule events.

Keyword operators (`contains`, `contains_any`, `contains_all`, `phrase`) of
every rule share one word index: an event's text is tokenised once per field
and looked up in it, so 1,000 keyword rules cost about as much as ten, instead
of a loop of 1,000 regexes. Matching is case- and accent-insensitive and
respects word boundaries: `strike` does not match "striker"; `strike*` matches
"strikes" and "striking"; a phrase matches across any run of spaces.
"""

from __future__ import annotations

import re
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.rules.events import RuleEvent
from monitor.rules.literals import required_runs
from monitor.rules.schema import Condition, MacroRef, Predicate
from monitor.stories.normalise import fold

Matcher = Callable[[RuleEvent], bool]
_TOKEN = re.compile(r"\w+")
MEMO_TEXTS = 20_000
"""Entry texts whose terms are remembered (least recently used are forgotten)."""
MEMO_WORDS = 500_000
"""Distinct words remembered with their terms; past this the memory starts afresh."""


_ASCII_WORDS = bytes(c if chr(c).isalnum() or c == ord("_") else ord(" ") for c in range(256))
"""ASCII word characters kept, every other byte made a space."""


def tokens(text: str) -> list[str]:
    """The text's runs of word characters (`\\w+`); ASCII texts take a faster path."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
    return _TOKEN.findall(text)


@dataclass
class KeywordIndex:
    """Every keyword term of a rule set, looked up by the words of an event field.

    Each distinct word is classified once (exact terms, prefix terms, regex
    literals it contains) and remembered, so scanning a text costs set
    operations in C over its words plus work for the words never seen before.
    """

    _ids: dict[tuple[tuple[str, ...], str], int] = field(default_factory=dict)
    _exact: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    _prefix: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    _prefix_lengths: set[int] = field(default_factory=set)
    _inner: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    """Regex literals (parts of words), keyed by their first two characters."""
    _phrases: dict[str, list[tuple[tuple[str, ...], bool, int]]] = field(
        default_factory=lambda: defaultdict(list))
    _memo: OrderedDict[str, frozenset[int]] = field(default_factory=OrderedDict)
    _known: set[str] = field(default_factory=set)
    """Words already classified."""
    _word_terms: dict[str, frozenset[int]] = field(default_factory=dict)
    """Classified words that carry at least one term."""
    _term_words: set[str] = field(default_factory=set)
    _phrase_heads: set[str] = field(default_factory=set)
    _plan: tuple[list[int], frozenset[str]] | None = None
    """Keys of `_word_terms` and `_phrases` as sets: intersecting a set with a dict
    iterates the whole dict, with a set only the smaller side."""

    def term(self, text: str) -> int:
        """Register a term (`word`, `word*`, or a phrase) and return its id."""
        raw = text.strip()
        prefix = raw.endswith("*")
        words = tuple(tokens(fold(raw.rstrip("*"))))
        if not words:
            raise ValueError(f"keyword {text!r} has no letters or digits")
        key = (words, "prefix" if prefix else "word")
        if key in self._ids:
            return self._ids[key]
        tid = self._new_id(key)
        if len(words) > 1:
            self._phrases[words[0]].append((words, prefix, tid))
            self._phrase_heads.add(words[0])
        elif prefix:
            self._prefix[words[0]].add(tid)
            self._prefix_lengths.add(len(words[0]))
        else:
            self._exact[words[0]].add(tid)
        return tid

    def inner(self, run: str) -> int:
        """Register a folded word run that must occur inside a word (a regex literal)."""
        key = ((run,), "inner")
        if key in self._ids:
            return self._ids[key]
        tid = self._new_id(key)
        self._inner[run[:2]].append((run, tid))
        return tid

    def _new_id(self, key: tuple[tuple[str, ...], str]) -> int:
        tid = len(self._ids)
        self._ids[key] = tid
        self._memo.clear()
        self._forget_words()
        self._plan = None
        return tid

    def _forget_words(self) -> None:
        """Drop every word's remembered terms (they are classified again on sight)."""
        self._known.clear()
        self._word_terms.clear()
        self._term_words.clear()

    def _prefix_plan(self) -> tuple[list[int], frozenset[str]]:
        """Prefix lengths in order, and every prefix cut to the shortest: a word whose
        head is not among them has no prefix term, which saves most of the lookups."""
        if self._plan is None:
            lengths = sorted(self._prefix_lengths)
            heads = frozenset(stem[:lengths[0]] for stem in self._prefix) if lengths else None
            self._plan = (lengths, heads or frozenset())
        return self._plan

    def lookup(self, event: RuleEvent, field_name: str) -> frozenset[int]:
        """Ids of every term present in the event's field (cached on the event).

        A story's field is the union of its entries' texts, and a term is in the
        story when it is in any entry, so each entry text is scanned once and
        remembered: a story that grows costs only its new entry.
        """
        key = "terms:" + field_name
        cached: frozenset[int] | None = event._cache.get(key)
        if cached is not None:
            return cached
        result = frozenset().union(*(self.scan(part) for part in event.parts(field_name)))
        event._cache[key] = result
        return result

    def scan(self, text: str) -> frozenset[int]:
        """Ids of every term in one text (remembered for the most recent texts)."""
        known = self._memo.get(text)
        if known is not None:
            self._memo.move_to_end(text)
            return known
        words = tokens(fold(text))
        distinct = set(words)
        self._classify(distinct.difference(self._known))
        found: set[int] = set()
        # Set intersections run in C: the cost is the text's length, not the rule count.
        for word in distinct.intersection(self._term_words):
            found |= self._word_terms[word]
        for word in distinct.intersection(self._phrase_heads):
            for i in (i for i, w in enumerate(words) if w == word):
                for phrase, prefix, tid in self._phrases[word]:
                    if tid not in found and _phrase_at(words, i, phrase, prefix):
                        found.add(tid)
        result = frozenset(found)
        self._memo[text] = result
        if len(self._memo) > MEMO_TEXTS:
            self._memo.popitem(last=False)
        return result

    def _classify(self, words: set[str]) -> None:
        """Find and remember the terms of words not seen before."""
        if len(self._known) + len(words) > MEMO_WORDS:
            self._forget_words()
        self._known |= words
        exact, prefix, inner, terms = self._exact, self._prefix, self._inner, self._word_terms
        lengths, heads = self._prefix_plan()
        shortest = lengths[0] if lengths else 0
        for word in words:
            found = set(exact.get(word, ()))
            if word[:shortest] in heads:
                for length in lengths:
                    if length > len(word):
                        break
                    found.update(prefix.get(word[:length], ()))
            if inner:
                for i in range(len(word) - 1):
                    candidates = inner.get(word[i:i + 2])
                    if candidates:
                        found.update(tid for run, tid in candidates if word.startswith(run, i))
            if found:
                terms[word] = frozenset(found)
                self._term_words.add(word)


def _phrase_at(words: list[str], i: int, phrase: tuple[str, ...], prefix: bool) -> bool:
    end = i + len(phrase)
    if end > len(words):
        return False
    if words[i:end - 1] != list(phrase[:-1]):
        return False
    last = words[end - 1]
    return last.startswith(phrase[-1]) if prefix else last == phrase[-1]


def _per_part(name: str, test: Callable[[str], bool]) -> Matcher:
    """A story matches when one of its entries does; each entry text is tested once."""
    memo: OrderedDict[str, bool] = OrderedDict()

    def matches(event: RuleEvent) -> bool:
        for part in event.parts(name):
            known = memo.get(part)
            if known is None:
                known = memo[part] = test(part)
                if len(memo) > MEMO_TEXTS:
                    memo.popitem(last=False)
            if known:
                return True
        return False

    return matches


def term_regex(term: str) -> str:
    """A case-sensitive keyword as a regex with the same word-boundary rules."""
    prefix = term.strip().endswith("*")
    body = r"\s+".join(re.escape(w) for w in tokens(term.strip().rstrip("*")))
    return r"(?<!\w)" + body + (r"\w*" if prefix else r"(?!\w)")


TEXT_FIELDS = frozenset({"title", "text", "any", "summary"})
"""Fields whose keywords are all found by a lookup of `any` (summary aside)."""


class Compiler:
    """Turns predicates into matchers that share one keyword index."""

    def __init__(self) -> None:
        self.keywords = KeywordIndex()

    def trigger(self, pred: Predicate) -> frozenset[int] | None:
        """Terms at least one of which must occur in `any` for the predicate to hold.

        None when no such set exists (e.g. a rule on sources or a regex): such
        predicates are evaluated for every event. The engine uses triggers to skip
        rules that cannot match, so most of a large rule set costs nothing.
        """
        options = [t for t in (self._item_trigger(i) for i in pred.all) if t is not None]
        if options:
            return min(options, key=len)
        if pred.any:
            parts = [self._item_trigger(i) for i in pred.any]
            if all(p is not None for p in parts):
                return frozenset().union(*(p for p in parts if p is not None))
        return None

    def _item_trigger(self, item: Condition | MacroRef | Predicate) -> frozenset[int] | None:
        if isinstance(item, Predicate):
            return self.trigger(item)
        if isinstance(item, MacroRef) or item.field not in TEXT_FIELDS or item.field == "summary":
            return None
        if item.operator == "regex":
            return self._regex_literals(item)
        if item.case_sensitive:
            return None
        terms = {"contains": [item.contains], "phrase": [item.phrase]}.get(
            item.operator, item.contains_any or item.contains_all)
        if item.operator not in ("contains", "phrase", "contains_any", "contains_all") or \
                not terms:
            return None
        return frozenset(self.keywords.term(t) for t in terms if t)

    def _regex_literals(self, cond: Condition) -> frozenset[int] | None:
        """Index ids of the word runs one of which every match of the regex contains."""
        assert cond.regex is not None
        runs = required_runs(cond.regex, 0 if cond.case_sensitive else re.IGNORECASE)
        return None if runs is None else frozenset(self.keywords.inner(r) for r in runs)

    def predicate(self, pred: Predicate) -> Matcher:
        alls = [self._item(i) for i in pred.all]
        anys = [self._item(i) for i in pred.any]
        nones = [self._item(i) for i in pred.none]

        def matches(event: RuleEvent) -> bool:
            # Plain loops: this runs for every candidate rule of every event.
            for m in alls:
                if not m(event):
                    return False
            for m in nones:
                if m(event):
                    return False
            return not anys or any(m(event) for m in anys)

        return matches

    def _item(self, item: Condition | MacroRef | Predicate) -> Matcher:
        if isinstance(item, Predicate):
            return self.predicate(item)
        if isinstance(item, MacroRef):  # resolved at load time; kept for the JSON schema
            raise ValueError(f"unresolved macro {item.macro!r}")
        return self.condition(item)

    def condition(self, cond: Condition) -> Matcher:
        name, op = cond.field, cond.operator
        if op in ("contains", "phrase", "contains_any", "contains_all"):
            terms = {"contains": [cond.contains], "phrase": [cond.phrase]}.get(
                op, cond.contains_any or cond.contains_all or [])
            texts = [t for t in terms if t]
            if cond.case_sensitive:
                return self._regex_terms(name, texts, op == "contains_all")
            ids = frozenset(self.keywords.term(t) for t in texts)
            index = self.keywords
            if op == "contains_all":
                return lambda event: ids <= index.lookup(event, name)
            return lambda event: not ids.isdisjoint(index.lookup(event, name))
        if op == "regex":
            assert cond.regex is not None
            pattern = re.compile(cond.regex, 0 if cond.case_sensitive else re.IGNORECASE)
            literals = self._regex_literals(cond)
            if literals is None:
                return _per_part(name, lambda text: pattern.search(text) is not None)
            scan = self.keywords.scan
            return _per_part(name, lambda text: not literals.isdisjoint(scan(text))
                             and pattern.search(text) is not None)
        if op == "exists":
            wanted = bool(cond.exists)
            return lambda event: bool(event.values(name)) == wanted
        if op in ("equals", "in_"):
            options: list[str | float] = (
                [cond.equals] if cond.equals is not None else list(cond.in_ or []))
            return self._equality(name, options, cond.case_sensitive)
        bound = getattr(cond, op)
        compare: Callable[[float, float], bool] = {
            "gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__,
            "lte": float.__le__}[op]

        def numeric(event: RuleEvent) -> bool:
            value = event.number(name)
            return value is not None and compare(value, float(bound))

        return numeric

    @staticmethod
    def _regex_terms(name: str, terms: list[str], need_all: bool) -> Matcher:
        patterns = [re.compile(term_regex(t)) for t in terms]
        if need_all:
            return lambda event: all(p.search(event.raw(name)) for p in patterns)
        combined = re.compile("|".join(p.pattern for p in patterns))
        return _per_part(name, lambda text: combined.search(text) is not None)

    @staticmethod
    def _equality(name: str, options: list[str | float], case_sensitive: bool) -> Matcher:
        numbers = {float(o) for o in options if isinstance(o, int | float)}
        texts = {str(o) if case_sensitive else fold(str(o))
                 for o in options if not isinstance(o, int | float)}

        def equal(event: RuleEvent) -> bool:
            value = event.number(name)
            if value is not None:
                return value in numbers or any(t == str(int(value)) for t in texts)
            values = event.values(name)
            return any((v if case_sensitive else fold(v)) in texts for v in values)

        return equal
