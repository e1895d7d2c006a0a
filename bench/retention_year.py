"""A year of a 1,000-feed deployment on generated data: does retention bound the database?

    .venv/bin/python -m bench.retention_year [--feeds 1000] [--per-day 5] [--days 365]

Writes one simulated day at a time (entries with bodies, stories, alerts) and
runs the daemon's upkeep after each day with the default retention settings,
printing the database size as it goes. See tests/yearsim.py for the model.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from monitor.config import RetentionConfig
from tests.yearsim import simulate

MB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--per-day", type=int, default=5, help="new entries per feed per day")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--body-bytes", type=int, default=1200)
    parser.add_argument("--every", type=int, default=15, help="print every N days")
    args = parser.parse_args()
    cfg = RetentionConfig()
    started = time.perf_counter()
    sizes: list[int] = []
    print(f"{args.feeds} feeds x {args.per_day} entries/day, {args.days} days, retention: "
          f"bodies/entries/stories/alerts {cfg.entries / 86400:.0f}d, tombstones "
          f"{cfg.tombstones / 86400:.0f}d after the feed drops them")
    print(f"{'day':>4} {'size MB':>9} {'entries':>9} {'tombstones':>10} {'stories':>8} "
          f"{'elapsed s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for day in simulate(Path(tmp) / "year.db", args.feeds, args.per_day, args.days, cfg,
                            args.body_bytes):
            sizes.append(day.size_bytes)
            if day.day % args.every == 0 or day.day == args.days - 1:
                print(f"{day.day:>4} {day.size_bytes / MB:>9.1f} {day.entries:>9} "
                      f"{day.tombstones:>10} {day.stories:>8} "
                      f"{time.perf_counter() - started:>9.0f}", flush=True)
    first_prune = int(cfg.entries / 86400)
    unpruned_per_day = sizes[first_prune - 1] / first_prune
    print(f"peak {max(sizes) / MB:.1f} MB; last {sizes[-1] / MB:.1f} MB; "
          f"without retention about {unpruned_per_day * args.days / MB:.0f} MB after "
          f"{args.days} days")


if __name__ == "__main__":
    main()
