"""Scale-out benchmark: feeds polled per second by 1, 2 and 4 instances on one PostgreSQL.

A local feed server (threads in this process) answers every feed after a fixed
latency (default 200 ms, a slow remote host) with two entries that are new on
every request, so each poll also stores, clusters and evaluates rules. Per
instance count: a fresh database, the instances start and poll every feed once
(warm-up), then every feed is made due at once and we time how long until all
have been polled again. CPU seconds of the instances (with their parser
processes), of PostgreSQL and of this process (the feed server) over that
window show where the bottleneck is. Run: `bench/scaleout` (see --help).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.poll import WORDS  # noqa: E402
from monitor.demo.render import Item, rss  # noqa: E402
from tests.helpers import Proc, write_config  # noqa: E402
from tests.servers import Reply, Request, Server  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


class Farm:
    """`feeds` feeds, each answering after `latency` with two never-seen entries."""

    def __init__(self, feeds: int, latency: float) -> None:
        self.latency = latency
        self.server = Server()
        self._n = 0
        self._lock = threading.Lock()
        for i in range(feeds):
            self.server.routes[f"/f{i}.xml"] = self._respond

    @staticmethod
    def _title(n: int) -> str:
        """Made-up words, so entries rarely cluster: polling is measured, not one big story."""
        rng = random.Random(n)
        return " ".join(rng.choices(WORDS, k=8))

    def _respond(self, req: Request) -> Reply:
        time.sleep(self.latency)
        with self._lock:
            self._n += 2
            n = self._n
        now = datetime.now(UTC)
        items = [Item(f"{req.path}-{k}", self._title(k), self._title(-k),
                      f"https://example.org{req.path}/{k}", now - timedelta(minutes=k % 7))
                 for k in (n, n + 1)]
        return Reply(body=rss("Bench", "https://example.org/", items),
                     headers={"Content-Type": "application/rss+xml"})


# -- CPU accounting from /proc -------------------------------------------------------
def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds) of one process; (0, 0) if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0.0
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _all_pids() -> Iterator[int]:
    return (int(p) for p in os.listdir("/proc") if p.isdigit())


def tree_cpu(roots: set[int]) -> float:
    """CPU seconds of `roots` and all their descendants still alive."""
    parents = {pid: _stat(pid) for pid in _all_pids()}
    members, grew = set(roots), True
    while grew:
        more = {pid for pid, (ppid, _) in parents.items() if ppid in members} - members
        members |= more
        grew = bool(more)
    return sum(parents[p][1] for p in members if p in parents)


def postgres_cpu() -> float:
    total = 0.0
    for pid in _all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                total += _stat(pid)[1]
        except OSError:
            continue
    return total


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- one run -------------------------------------------------------------------------
def run(admin: str, instances: int, feeds: int, latency: float, concurrency: int) -> dict[str, Any]:
    name = f"storywatch_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    farm = Farm(feeds, latency)
    procs: list[Proc] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            rules = tmp / "rules"
            rules.mkdir()
            (rules / "corroborated.yaml").write_text(
                (ROOT / "rules" / "corroborated-story.yaml").read_text())
            config = write_config(tmp, {
                "state_dir": str(tmp), "database_url": url, "rules_dir": str(rules),
                "feeds": [{"url": farm.server.url(f"/f{i}.xml"), "interval": 3600}
                          for i in range(feeds)],
                "polling": {"min_interval": 60, "dispatch_interval": 0.2,
                            "concurrency": concurrency, "host_concurrency": 100_000,
                            "host_spacing": 0, "allowed_networks": ["127.0.0.0/8"],
                            "parse_workers": 1, "timeout": 30},
                "metrics": {"enabled": False}, "log": {"level": "warning"}})
            procs = [Proc(tmp, ["-c", str(config), "run"]) for _ in range(instances)]
            with psycopg.connect(url, autocommit=True) as db:
                wait_polled(db, feeds, None, procs)  # warm-up: the first poll of every feed
                stats0 = db_stats(db, name)
                cpu0 = (tree_cpu({p.proc.pid for p in procs}), postgres_cpu(), own_cpu())
                t0 = datetime.now(UTC)
                start = time.monotonic()
                db.execute("UPDATE feeds SET next_check_at = %s", (t0,))
                wait_polled(db, feeds, t0, procs)
                wall = time.monotonic() - start
                cpu1 = (tree_cpu({p.proc.pid for p in procs}), postgres_cpu(), own_cpu())
                stats1 = db_stats(db, name)
    finally:
        for p in procs:
            p.proc.terminate()
        for p in procs:
            p.wait(60)
        farm.server.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return {"instances": instances, "wall": wall, "rate": feeds / wall,
            "cpu_instances": cpu[0], "cpu_postgres": cpu[1], "cpu_server": cpu[2],
            "xacts": stats1[0] - stats0[0], "rows": stats1[1] - stats0[1]}


def wait_polled(db: psycopg.Connection[Any], feeds: int, since: datetime | None,
                procs: list[Proc], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if since is None:
            row = db.execute("SELECT count(*) FROM feeds WHERE last_checked_at IS NOT NULL"
                             ).fetchone() if _has_feeds(db) else (0,)
        else:
            row = db.execute("SELECT count(*) FROM feeds WHERE last_checked_at >= %s",
                             (since,)).fetchone()
        if row and row[0] >= feeds:
            return
        for p in procs:
            if p.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"feeds not polled in time:\n{p.output()[-3000:]}")
        time.sleep(0.1)


def _has_feeds(db: psycopg.Connection[Any]) -> bool:
    row = db.execute("SELECT to_regclass('feeds') IS NOT NULL").fetchone()
    return bool(row and row[0])


def db_stats(db: psycopg.Connection[Any], name: str) -> tuple[int, int]:
    """(committed transactions, rows written) so far in the benchmark database."""
    row = db.execute("SELECT xact_commit, tup_inserted + tup_updated + tup_deleted "
                     "FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per response")
    parser.add_argument("--concurrency", type=int, default=20,
                        help="fetches in flight per instance (polling.concurrency)")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--pg", default=os.environ.get(
        "STORYWATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin URL; a fresh database is created and dropped per run")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{args.feeds} feeds, {args.latency * 1000:.0f} ms per response, "
          f"concurrency {args.concurrency} per instance")
    print("instances  feeds/s  scaling  ceiling  CPU inst  CPU pg  CPU server  "
          "xact/poll  rows/poll")
    base = None
    for n in args.instances:
        r = run(args.pg, n, args.feeds, args.latency, args.concurrency)
        base = base or r["rate"] / r["instances"]
        ceiling = n * args.concurrency / args.latency
        print(f"{n:>9}  {r['rate']:>7.1f}  {r['rate'] / base:>6.2f}x  {ceiling:>7.0f}  "
              f"{r['cpu_instances'] / r['wall']:>7.0%}  {r['cpu_postgres'] / r['wall']:>6.0%}  "
              f"{r['cpu_server'] / r['wall']:>10.0%}  {r['xacts'] / args.feeds:>9.1f}  "
              f"{r['rows'] / args.feeds:>9.1f}", flush=True)
    print("scaling: feeds/s relative to one instance; ceiling: concurrency x instances / "
          "latency (pure network wait); CPU: share of one core over the timed round")


if __name__ == "__main__":
    main()
