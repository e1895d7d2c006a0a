"""Storing benchmark: CPU of the group commit alone, without HTTP or parsing.

The polling benchmark (`bench/poll`) measures the whole daemon; this one isolates
what its event loop's process spends in `Ingestor.store`, where cold polling
spends most of its CPU. It builds the bench feeds of `bench/poll`, parses and
normalises them up front, then stores them in groups as the daemon's group commit
does, into a fresh database:
  cold      every feed with all its entries new
  warm      every feed again, answered 304 (feed state only)
  same-200  every feed again, the same entries in a 200 answer (identity lookups)
Prints CPU milliseconds per feed and per entry for each. Run:
`.venv/bin/python bench/store.py [--feeds N] [--group G] [--database-url URL]`.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.poll import write_feed  # noqa: E402
from monitor.db import engine as db  # noqa: E402
from monitor.db.queries import upsert_feed  # noqa: E402
from monitor.feeds import fetch  # noqa: E402
from monitor.feeds.parse import parse  # noqa: E402
from monitor.feeds.schedule import Policy  # noqa: E402
from monitor.ingest import Ingestor, Poll  # noqa: E402
from monitor.stories.normalise import normalise  # noqa: E402


def polls(work: Path, feeds: int, entries: int) -> list[tuple[Poll, Poll]]:
    """(200 with every entry, 304) for each feed, parsed and normalised already."""
    out = []
    now = datetime.now(UTC)
    for i in range(feeds):
        path = work / f"{i}.xml"
        write_feed(path, i, 0, entries)
        parsed = parse(path.read_bytes(), "application/rss+xml")
        ok = fetch.FetchResult(fetch.OK, 200, etag=f'"e{i}"', body_hash=f"h{i}",
                               last_modified="Sat, 21 Nov 2026 10:00:00 GMT")
        out.append((Poll(i + 1, ok, parsed, None, normalise(parsed.entries, now)),
                    Poll(i + 1, fetch.FetchResult(fetch.NOT_MODIFIED, 304))))
    return out


def run(label: str, ingestor: Ingestor, batch: list[Poll], group: int, entries: int) -> None:
    random.Random(7).shuffle(batch)
    cpu = time.process_time()
    wall = time.perf_counter()
    for i in range(0, len(batch), group):
        for result in ingestor.store(batch[i:i + group], datetime.now(UTC)):
            if isinstance(result, Exception):
                raise result
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    n = len(batch)
    print(f"{label:9} {n} feeds: cpu {cpu:6.2f}s wall {wall:6.2f}s  "
          f"{1000 * cpu / n:6.2f} ms/feed  {1e6 * cpu / (n * entries) if entries else 0:6.1f} "
          "us/entry", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--entries", type=int, default=20)
    ap.add_argument("--group", type=int, default=16, help="polls per group commit (16)")
    ap.add_argument("--database-url", help="default: a fresh SQLite file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="storywatch-store-") as tmp:
        work = Path(tmp)
        url = args.database_url or f"sqlite:///{work / 'store.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        with sessions.begin() as session:
            for i in range(args.feeds):
                upsert_feed(session, f"http://127.0.0.1/c/{i}.xml", f"f{i}", [], None, True,
                            datetime.now(UTC))
        print(f"# {platform.machine()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
              f"{engine.dialect.name}, group {args.group}", flush=True)
        made = polls(work, args.feeds, args.entries)
        ingestor = Ingestor(sessions, Policy(3600, 900, 86400, 300, 86400))
        run("cold", ingestor, [ok for ok, _ in made], args.group, args.entries)
        run("warm", ingestor, [nm for _, nm in made], args.group, 0)
        run("same-200", ingestor, [ok for ok, _ in made], args.group, args.entries)
        engine.dispose()


if __name__ == "__main__":
    main()
