"""A year of a 1,000-feed deployment on generated data: does retention bound the database?

    .venv/bin/python -m bench.retention_year [--feeds 1000] [--per-day 5] [--days 365]
                                             [--plot docs/img/retention-year.png]

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
from tests.yearsim import Day, simulate

MB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--per-day", type=int, default=5, help="new entries per feed per day")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--body-bytes", type=int, default=1200)
    parser.add_argument("--every", type=int, default=15, help="print every N days")
    parser.add_argument("--plot", type=Path, help="also draw size and rows per day (matplotlib)")
    args = parser.parse_args()
    cfg = RetentionConfig()
    started = time.perf_counter()
    days: list[Day] = []
    print(f"{args.feeds} feeds x {args.per_day} entries/day, {args.days} days, retention: "
          f"bodies/entries/stories/alerts {cfg.entries / 86400:.0f}d, tombstones "
          f"{cfg.tombstones / 86400:.0f}d after the feed drops them")
    print(f"{'day':>4} {'size MB':>9} {'entries':>9} {'tombstones':>10} {'stories':>8} "
          f"{'elapsed s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for day in simulate(Path(tmp) / "year.db", args.feeds, args.per_day, args.days, cfg,
                            args.body_bytes):
            days.append(day)
            if day.day % args.every == 0 or day.day == args.days - 1:
                print(f"{day.day:>4} {day.size_bytes / MB:>9.1f} {day.entries:>9} "
                      f"{day.tombstones:>10} {day.stories:>8} "
                      f"{time.perf_counter() - started:>9.0f}", flush=True)
    sizes = [d.size_bytes for d in days]
    first_prune = int(cfg.entries / 86400)
    unpruned_per_day = sizes[first_prune - 1] / first_prune
    print(f"peak {max(sizes) / MB:.1f} MB; last {sizes[-1] / MB:.1f} MB; "
          f"without retention about {unpruned_per_day * args.days / MB:.0f} MB after "
          f"{args.days} days")
    if args.plot:
        plot(days, args.feeds, args.per_day, args.plot)


def plot(days: list[Day], feeds: int, per_day: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
    fig, (size, rows) = plt.subplots(1, 2, figsize=(10, 3.4))
    x = [d.day for d in days]
    size.plot(x, [d.size_bytes / MB for d in days], color="tab:blue")
    size.set_title("Database size", fontsize=10)
    size.set_ylabel("MB")
    rows.plot(x, [d.entries for d in days], label="entries (incl. tombstones)")
    rows.plot(x, [d.tombstones for d in days], label="tombstones")
    rows.plot(x, [d.stories for d in days], label="stories")
    rows.set_title("Rows", fontsize=10)
    rows.legend(fontsize=8)
    for ax in (size, rows):
        ax.set_xlabel("simulated day")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{days[-1].day + 1} days of {feeds:,} feeds × {per_day} entries/day, "
                 "default retention", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
