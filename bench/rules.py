"""Rule engine benchmark: `.venv/bin/python bench/rules.py [--events N]`.

Generates rule sets of 10, 100 and 1,000 rules in a realistic mix (70% keyword
rules with lists, prefixes and phrases, 10% regex rules, 20% correlation rules:
count, sequence grouped by country, spike, absence) and a stream of story
events written from the same vocabulary, then pushes the stream through the
production engine (`Engine.process` with an in-memory state store). Prints
story events per second, p50/p99 latency per event, and the size of the open
windows. The peer is what the engine replaces: every keyword condition as its
own compiled regex, searched one after another.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.rules.engine import Engine, MemoryStore, RuleSet
from monitor.rules.events import RuleEvent
from monitor.rules.match import term_regex
from monitor.rules.schema import LoadedRule, Rule
from monitor.stories.normalise import fold

COMMON = ("strike drone missile attack power grid plant energy ceasefire truce talks minister "
          "election vote court ruling flood quake storm fire explosion blast protest police "
          "bank rate inflation market shares oil gas pipeline port ship hospital school "
          "outbreak virus vaccine recall factory strike* union wage tariff sanction").split()
COUNTRIES = ["Ukraine", "Russia", "France", "Germany", "Brazil", "India", "Japan", "Kenya",
             "Peru", "Chile", "Turkey", "Egypt", "Iran", "Poland", "Canada", "Mexico"]
OUTLETS = [f"Outlet {i}" for i in range(20)]


def words(rng: random.Random, n: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(4, 10)))
                   for _ in range(n)})


def vocabulary(rng: random.Random) -> tuple[list[str], list[str]]:
    """(filler words most of a text is made of, topical words rules look for)."""
    return words(rng, 20_000), words(rng, 2_000) + [w.rstrip("*") for w in COMMON]


def make_rules(n: int, vocab: list[str], rng: random.Random) -> list[Rule]:
    """Rules over the topical vocabulary: each matches a percent or two of stories."""
    rules = []
    for i in range(n):
        kind = rng.random()
        terms = rng.sample(vocab, rng.randint(5, 20))
        terms = [t + "*" if rng.random() < 0.2 else t for t in terms]
        if rng.random() < 0.3:
            terms.append(" ".join(rng.sample(vocab, 2)))
        keyword = {"all": [{"field": rng.choice(["title", "any"]), "contains_any": terms}],
                   "none": [{"contains_any": rng.sample(vocab, 3)}]}
        doc: dict[str, Any] = {"id": f"r{i}", "title": f"rule {i}"}
        if kind < 0.7:
            doc |= {"where": keyword, "min_sources": rng.choice([1, 2, 3])}
        elif kind < 0.8:
            words = "|".join(re.escape(w) for w in rng.sample(vocab, 4))
            doc |= {"where": {"any": [{"field": "text", "regex": rf"\b({words})\w*\s+\d+"}]}}
        else:
            other = {"any": [{"contains_any": rng.sample(vocab, 10)}]}
            corr = rng.choice([
                {"type": "count", "signal": "a", "threshold": 3, "within": "6h"},
                {"type": "sequence", "steps": ["a", "b"], "within": "72h",
                 "group_by": ["countries"]},
                {"type": "spike", "signal": "a", "window": "1h", "baseline": "24h"},
                {"type": "absence", "after": "a", "expect": "b", "within": "12h"},
            ])
            signals = {"a": keyword}
            if corr["type"] in ("sequence", "absence"):
                signals["b"] = other
            doc |= {"signals": signals, "correlation": corr}
        rules.append(Rule.model_validate(doc))
    return rules


def make_events(n: int, filler: list[str], topical: list[str],
                rng: random.Random) -> list[RuleEvent]:
    """Entries of 60-200 words, mostly filler with a few topical words, joining stories."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    events = []
    stories: dict[int, tuple[list[str], list[str], list[str]]] = {}
    for i in range(n):
        story = rng.randint(1, max(1, n // 3))
        title = " ".join(rng.choice(filler) for _ in range(rng.randint(6, 12)))
        title += f" {rng.choice(topical)} {rng.choice(COUNTRIES)}"
        body = [rng.choice(filler) if rng.random() > 0.05 else str(rng.randint(1, 500))
                for _ in range(rng.randint(60, 200))]
        body += rng.sample(topical, rng.randint(0, 3))
        rng.shuffle(body)
        text = " ".join(body)
        titles, texts, sources = stories.setdefault(story, ([], [], []))
        source = rng.choice(OUTLETS)
        change = "created" if not titles else ("updated" if source in sources
                                               else "source_added")
        titles.append(title)
        texts.append(text)
        sources.append(source)
        events.append(RuleEvent("story", change, t0 + timedelta(seconds=30 * i), story,
                                tuple(titles[-5:]), tuple(texts[-5:]), source,
                                tuple(sources), entry_count=len(titles)))
    return events


def run_engine(rules: list[Rule], events: list[RuleEvent]) -> dict[str, float]:
    compiled = RuleSet.compile([LoadedRule(r, "bench") for r in rules])
    store = MemoryStore()
    engine = Engine(compiled, store)
    latencies = []
    hits = 0
    started = time.perf_counter()
    cpu = time.process_time()
    for event in events:
        event._cache.clear()
        t = time.perf_counter()
        hits += len(engine.process(event))
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    latencies.sort()
    # Memory of the engine with its open windows, measured on a second, traced pass.
    tracemalloc.start()
    traced = Engine(RuleSet.compile([LoadedRule(r, "bench") for r in rules]), MemoryStore())
    for event in events[: len(events) // 4]:
        event._cache.clear()
        traced.process(event)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"events_per_s": len(events) / elapsed, "events_per_cpu_s": len(events) / cpu,
            "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3, "hits": hits,
            "state_bytes": len(json.dumps(list(store.data.values()))),
            "groups": len(store.data), "peak_mb": peak / 2**20}


def run_peer(rules: list[Rule], events: list[RuleEvent]) -> float:
    """Keyword rules as a loop of one regex per term: what naive engines do."""
    compiled = []
    for r in rules:
        if r.where is None:
            continue
        for cond in r.where.all:
            terms = getattr(cond, "contains_any", None) or []
            field = getattr(cond, "field", "any")
            compiled.append((field, [re.compile(term_regex(fold(t))) for t in terms]))
    started = time.perf_counter()
    for event in events:
        event._cache.clear()
        for field, patterns in compiled:
            text = fold(event.raw(field))
            any(p.search(text) for p in patterns)
    return len(events) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    filler, topical = vocabulary(rng)
    events = make_events(args.events, filler, topical, rng)
    print(f"# rules benchmark: {args.events} story events, {platform.processor() or 'cpu'}, "
          f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{'rules':>6} {'events/s':>10} {'per CPU s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'hits':>7} "
          f"{'groups':>7} {'state KB':>9} {'peak MB':>8} {'peer ev/s':>10} {'ratio':>6}",
          flush=True)
    for n in (10, 100, 1000):
        rules = make_rules(n, topical, random.Random(n))
        r = run_engine(rules, events)
        peer = run_peer(rules, events)
        print(f"{n:>6} {r['events_per_s']:>10.0f} {r['events_per_cpu_s']:>10.0f} "
              f"{r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
              f"{r['hits']:>7.0f} {r['groups']:>7.0f} {r['state_bytes'] / 1024:>9.1f} "
              f"{r['peak_mb']:>8.1f} {peer:>10.0f} {r['events_per_s'] / peer:>6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
