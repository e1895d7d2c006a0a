"""Required literals of a regex: words one of which every match must contain.

A regex condition is expensive to run on every new entry, but most analysts'
regexes name words (`\\b(killed|dead)\\s+\\d+`). From the parsed pattern this
module finds a set of literal strings at least one of which occurs in every
match, and reduces each to a run of word characters in the folded form the
keyword index tokenises. The index then says cheaply which entries can
match, and only those are searched. The reduction is conservative: whatever
the regex matches, case-insensitively or not, contains one of the runs as
part of a folded word (the dotless `ı`, which `re` equates with `i` but
folding does not, is why runs are cut at `i` for case-insensitive patterns).
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from monitor.stories.normalise import fold

_WORD_RUN = re.compile(r"\w+")
_NOT_I = re.compile(r"[^iı]+")
MIN_RUN = 2
"""Shorter runs are too common to prefilter with (and the index keys on two characters)."""

Options = frozenset[str]


def _best(options: list[Options]) -> Options | None:
    """The most selective alternative set: its shortest member is the longest."""
    if not options:
        return None
    return max(options, key=lambda o: (min(len(s) for s in o), -len(o)))


def _sequence(items: Any) -> list[Options]:
    """Every literal set that a match of this sequence must contain one of."""
    found: list[Options] = []
    run: list[str] = []
    for op, av in items:
        if op is sre.LITERAL:
            run.append(chr(av))
            continue
        if run:
            found.append(frozenset({"".join(run)}))
            run = []
        inner: Options | None = None
        if op is sre.SUBPATTERN:
            inner = _best(_sequence(av[3]))
        elif op is sre.ATOMIC_GROUP:
            inner = _best(_sequence(av))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            inner = _best(_sequence(av[2]))
        elif op is sre.BRANCH:
            alternatives = [_best(_sequence(alt)) for alt in av[1]]
            if all(a is not None for a in alternatives):
                inner = frozenset().union(*(a for a in alternatives if a is not None))
        if inner is not None:
            found.append(inner)
    if run:
        found.append(frozenset({"".join(run)}))
    return found


def _ignores_case(items: Any, flags: int) -> bool:
    if flags & re.IGNORECASE:
        return True
    for op, av in items:
        if op is sre.SUBPATTERN and (av[1] & re.IGNORECASE or _ignores_case(av[3], 0)):
            return True
        if op is sre.BRANCH and any(_ignores_case(alt, 0) for alt in av[1]):
            return True
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and \
                _ignores_case(av[2], 0):
            return True
        if op is sre.ATOMIC_GROUP and _ignores_case(av, 0):
            return True
    return False


def _run(literal: str, caseless: bool) -> str | None:
    """The longest word run of the folded literal (without `i` when case is ignored)."""
    runs = _WORD_RUN.findall(fold(literal))
    if caseless:
        runs = [part for r in runs for part in _NOT_I.findall(r)]
    longest = max(runs, key=len, default="")
    return longest if len(longest) >= MIN_RUN else None


def required_runs(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Folded word runs one of which is part of a word of every text the regex matches.

    None when no such set exists (e.g. `\\d+`): the regex must run on every text.
    """
    parsed = _parser.parse(pattern, flags)
    caseless = _ignores_case(parsed.data, parsed.state.flags)
    candidates = []
    for option in _sequence(parsed.data):
        runs = [_run(s, caseless) for s in option]
        if all(r is not None for r in runs):
            candidates.append(frozenset(r for r in runs if r is not None))
    return _best(candidates)
