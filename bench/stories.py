#!/usr/bin/env python3
"""Story clustering benchmark: quality (BCubed, pairwise) and speed, beside peers.

    bench/stories                 seeds + distractors, newsclust neus_val, speed
    bench/stories --data FILE     any labelled JSONL stream; last line is BCubed P/R/F1
    bench/stories --quick         quality only, no speed runs

Storywatch runs through its production path with default settings; peers run
on the same stream in the same process (see bench/peers.py).
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from functools import partial
from multiprocessing import get_context
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import labelled, production, speed
from bench.labelled import LabelledDoc
from bench.peers import MinHashPeer, TfidfCentroidPeer
from bench.scoring import Scores, score

PR_SET_PDEATHSIG = 1
"""prctl(2): the signal this process gets when its parent exits."""
SPEED_WINDOWS = (10_000, 100_000, 200_000)
MEASURED = 3_000
"""Entries timed after the window is full."""
PEER_WINDOWS = (10_000,)
"""The brute-force peer's cost grows linearly with the window; at 100k it takes too long."""
PEER_MEASURED = 300
"""The brute-force peer is slow; fewer timed entries still give a stable mean."""


def _line(name: str, s: Scores, ref: Scores | None) -> str:
    ratio = f"  (Storywatch F1 / this = {ref.f1 / s.f1:.2f}x)" if ref and s.f1 else ""
    return (f"  {name:<16} BCubed P={s.precision:.4f} R={s.recall:.4f} F1={s.f1:.4f}  "
            f"pairwise P={s.pair_precision:.4f} R={s.pair_recall:.4f} F1={s.pair_f1:.4f}{ratio}")


def quality(title: str, docs: Sequence[LabelledDoc]) -> tuple[Scores, dict[str, int]]:
    """Score Storywatch and the peers on one stream; return Storywatch's scores."""
    gold = {d.doc_id: d.story_id for d in docs}
    window = production.default_index().window
    ours = production.run(docs)
    mine = score(gold, ours.stories)
    print(f"== {title}: {len(docs)} documents, {len(set(gold.values()))} gold stories, "
          f"window {window / timedelta(hours=1):g} h")
    print(_line("storywatch", mine, None))
    peers: list[tuple[str, Callable[[Sequence[LabelledDoc]], dict[str, int]]]] = [
        ("tfidf-centroid", lambda ds: TfidfCentroidPeer(window).run(ds).stories),
        ("minhash-lsh", lambda ds: MinHashPeer(window).run(ds).stories),
    ]
    for name, peer in peers:
        print(_line(name, score(gold, peer(docs)), mine))
    return mine, ours.stories


def seeds_report(docs: Sequence[LabelledDoc], found: dict[str, int]) -> bool:
    seeds = [d.doc_id for d in docs if d.story_id == labelled.SEED_STORY]
    stories = {found[s] for s in seeds}
    intruders = [d.doc_id for d in docs
                 if d.story_id != labelled.SEED_STORY and found[d.doc_id] in stories]
    ok = len(stories) == 1 and not intruders
    print(f"  seeds: {len(seeds)} seeds in {len(stories)} story(ies), "
          f"{len(intruders)} distractor(s) inside {intruders or ''} -> "
          f"{'PASS' if ok else 'FAIL'}")
    return ok


def _die_with_parent() -> None:
    """Make this worker die with the benchmark: left running after an interrupted run,
    it would take a core from the next run and skew its figures (Linux `prctl`)."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def speed_report() -> None:
    print("== speed: normalise + dedup + cluster, synthetic stream, a fresh process per run "
          "(Storywatch's text analysis in its offload process, as in the daemon)")
    spawn = get_context("spawn")
    results: list[speed.Speed] = []
    jobs: list[Callable[[], list[speed.Speed]]] = [
        partial(speed.storywatch, SPEED_WINDOWS, MEASURED),
        partial(speed.storywatch, SPEED_WINDOWS, MEASURED, offload=False),
        *(partial(speed.peer, w, PEER_MEASURED) for w in PEER_WINDOWS)]
    for job in jobs:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn,
                                 initializer=_die_with_parent) as pool:
            found = pool.submit(job).result()
        for r in found:
            results.append(r)
            print(f"  {r.system:<34} window {r.window_docs:>7,}: {r.entries_per_s:7.0f} "
                  f"entries/s ({r.entries_per_cpu_s:.0f} per CPU-s)  p99 {r.p99_ms:6.2f} ms  "
                  f"peak RSS {r.peak_rss_mb:5.0f} MB  open stories {r.open_stories:,}",
                  flush=True)
    ours = {r.window_docs: r for r in results if r.system == "storywatch"}
    base = ours[SPEED_WINDOWS[0]]
    for w, r in ours.items():
        print(f"  storywatch per-entry cost at {w:,} / at {base.window_docs:,}: "
              f"{base.entries_per_s / r.entries_per_s:.2f}x wall, "
              f"{base.entries_per_cpu_s / r.entries_per_cpu_s:.2f}x CPU")
    for r in results:
        if r.system != "storywatch" and r.window_docs in ours:
            print(f"  speed ratio storywatch / {r.system} at {r.window_docs:,}: "
                  f"{ours[r.window_docs].entries_per_s / r.entries_per_s:.1f}x wall, "
                  f"{ours[r.window_docs].entries_per_cpu_s / r.entries_per_cpu_s:.1f}x CPU")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, help="labelled JSONL stream to measure")
    parser.add_argument("--quick", action="store_true", help="skip the speed runs")
    args = parser.parse_args(argv)
    if args.data:
        mine, _ = quality(str(args.data), labelled.read_jsonl(args.data))
        print(f"BCubed P={mine.precision:.4f} R={mine.recall:.4f} F1={mine.f1:.4f}")
        return 0
    ok = True
    if labelled.SEEDS.is_dir():
        docs = labelled.seeds_with_distractors()
        _, found = quality("seeds + distractors", docs)
        ok = seeds_report(docs, found)
    else:
        print(f"== seeds: {labelled.SEEDS} not found, skipped")
    last: Scores | None = None
    val = labelled.NEWSCLUST / "neus_val.jsonl"
    if val.is_file():
        last, _ = quality("newsclust neus_val", labelled.read_jsonl(val))
    else:
        print(f"== newsclust: {val} not found, skipped")
    if not args.quick:
        speed_report()
    if last:
        print(f"BCubed P={last.precision:.4f} R={last.recall:.4f} F1={last.f1:.4f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
