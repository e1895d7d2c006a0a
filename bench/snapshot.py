#!/usr/bin/env python3
"""Restart cost of the story index: full rebuild versus snapshot load, and the save's pause.

    python -m bench.snapshot --entries 20000

Builds an SQLite database whose window holds `--entries` clustered entries
(the synthetic stream of bench/synthetic.py, stored as the store stage does,
story ids taken from the stream's labels: a rebuild replays stored ids, it
decides nothing), then measures in this process:

* rebuild: `StoryStage.rebuild`, what every start did before snapshots;
* save: `snapshot.fork_write`, the child's time and the file's size;
* load: `StoryStage.restore` (validation, read, digest, expiry, catch-up);

each while an asyncio loop ticks every millisecond (rebuild and load in a
worker thread, as the daemon runs them): the longest tick gap is how long the
loop stood still.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from bench import production
from bench.synthetic import Stream
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Entry, Feed, Story, StoryMember
from monitor.offload import Offload
from monitor.rules.engine import RuleSet
from monitor.rules.live import RuleRunner
from monitor.stories import snapshot
from monitor.storystage import StoryStage

T = TypeVar("T")
ROWS = 5000
"""Rows per insert while building the database."""


def build(url: str, entries: int, now: datetime) -> None:
    """A database whose window holds `entries` entries, each in its labelled story."""
    engine = make_engine(url)
    upgrade(engine)
    window = production.default_index().window
    docs = list(Stream().docs(entries, window, entries))
    shift = now - timedelta(minutes=1) - docs[-1].published
    outlets = sorted({d.outlet for d in docs})
    with session_factory(engine).begin() as s:
        s.execute(insert(Feed), [
            {"id": i, "url": f"http://127.0.0.1:9/{o}.xml", "name": o, "host": "127.0.0.1",
             "tags": [], "next_check_at": now, "created_at": now}
            for i, o in enumerate(outlets, 1)])
        feed = {o: i for i, o in enumerate(outlets, 1)}
        stories: dict[str, int] = {}
        for start in range(0, entries, ROWS):
            made, rows, members = [], [], []
            for n, labelled in enumerate(docs[start:start + ROWS], start + 1):
                d = production.to_doc(n, labelled)
                at = d.at + shift
                story = stories.get(labelled.story_id)
                if story is None:
                    story = stories[labelled.story_id] = len(stories) + 1
                    made.append({"id": story, "title": d.title, "first_seen_at": at,
                                 "last_seen_at": at, "updated_at": at})
                rows.append({"id": n, "feed_id": feed[labelled.outlet],
                             "entry_key": f"g:{d.guid}", "guid": d.guid, "title": d.title,
                             "content": d.text, "canonical_url": d.canonical_url,
                             "content_hash": d.content_hash, "event_at": at,
                             "fetched_at": at, "story_id": story})
                members.append({"id": n, "story_id": story, "entry_id": n,
                                "source": labelled.outlet, "similarity": 1.0,
                                "reason": "cluster", "detail": {}, "joined_at": at})
            s.execute(insert(Story), made)
            s.execute(insert(Entry), rows)
            s.execute(insert(StoryMember), members)
    engine.dispose()


def stage(url: str, offload: Offload | None = None) -> StoryStage:
    return StoryStage(session_factory(make_engine(url)), production.default_index(),
                      RuleRunner(lambda: RuleSet(()), list, list), offload=offload)


async def ticking(work: Callable[[], Awaitable[T]]) -> tuple[T, float, float, float]:
    """Run `work` while the loop ticks every millisecond: its result, the longest tick gap
    (how long the loop stood still), wall and CPU seconds."""
    gaps = [0.0]

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            t = time.perf_counter()
            gaps.append(t - last)
            last = t

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        result = await work()
    finally:
        ticker.cancel()
    return result, max(gaps), time.perf_counter() - wall, time.process_time() - cpu


async def save(path: Path, st: StoryStage, now: datetime) -> tuple[int, float]:
    """Save as the daemon does: fork, then wait for the child in a thread; returns bytes
    and the seconds the fork itself took (what the daemon reports as `paused_ms`)."""
    header = st.snapshot_header(now)
    started = time.perf_counter()
    pid, pipe = snapshot.fork_write(path, st.index, header)
    forked = time.perf_counter() - started
    ok, detail = await asyncio.to_thread(snapshot.child_result, pid, pipe)
    assert ok, detail
    return int(detail), forked


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=20_000)
    args = ap.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="storywatch-snapshot-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'storywatch.db'}"
        started = time.perf_counter()
        build(url, args.entries, now)
        print(f"database with {args.entries} entries built in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        st = stage(url)
        n, stall, wall, cpu = asyncio.run(ticking(lambda: asyncio.to_thread(st.rebuild, now)))
        print(f"rebuild (in a thread): {n} entries, {wall:.1f} s wall, {cpu:.1f} s CPU, "
              f"loop stalled at most {stall * 1000:.1f} ms; {st.index.open_stories} open stories",
              flush=True)
        work = Offload()
        try:
            two = stage(url, work)
            n, stall, wall, cpu = asyncio.run(ticking(
                lambda: asyncio.to_thread(two.rebuild, now)))
            print(f"rebuild with the offload process (the daemon on several CPUs): {n} entries, "
                  f"{wall:.1f} s wall, {cpu:.1f} s CPU in this process, loop stalled at most "
                  f"{stall * 1000:.1f} ms", flush=True)
            assert two.index.open_stories == st.index.open_stories
        finally:
            work.close()
        path = Path(tmp) / snapshot.NAME
        (size, forked), stall, wall, _ = asyncio.run(ticking(lambda: save(path, st, now)))
        print(f"save: fork {forked * 1000:.1f} ms, loop stalled at most {stall * 1000:.1f} ms; "
              f"the child wrote {size / 1e6:.1f} MB in {wall:.1f} s", flush=True)
        fresh = stage(url)
        n, stall, wall, cpu = asyncio.run(ticking(
            lambda: asyncio.to_thread(fresh.restore, path, now)))
        print(f"load (in a thread): {wall:.2f} s wall, {cpu:.2f} s CPU ({n} members replayed), "
              f"loop stalled at most {stall * 1000:.1f} ms; {fresh.index.open_stories} open "
              f"stories; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
              "MiB", flush=True)
        assert fresh.index.open_stories == st.index.open_stories
    return 0


if __name__ == "__main__":
    sys.exit(main())
