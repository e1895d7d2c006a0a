"""Several daemon processes on one PostgreSQL: claimed work, one story order, no loss.

Each test compares the fleet's final database with one in-process instance
on SQLite that saw the same feeds: the same stories (as sets of entry GUIDs),
the same alerts (rule, sources, number of changes).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from monitor.daemon import Daemon
from monitor.db.models import Host
from tests.conftest import need
from tests.fleet import (
    ROUNDS,
    FeedFarm,
    alerts,
    delivered,
    entry_guids,
    fleet_config,
    kill_all,
    kill_lock_holder,
    outbox_keys,
    random_victim,
    rules_dir,
    start,
    stories,
    unclustered,
)
from tests.helpers import Proc, query, run_daemon, settings, wait_until
from tests.servers import Reply, Server

OUTLETS = 8
LEASE = 3.0


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What one instance makes of every round: the fleet must match it."""
    tmp = tmp_path_factory.mktemp("single")
    farm = FeedFarm(OUTLETS)
    farm.round = ROUNDS - 1
    conf = settings(tmp, feeds=farm.feeds(0.5), rules_dir=rules_dir(tmp))
    db = conf.resolved_database_url()
    try:
        run_daemon(Daemon(conf), lambda: _settled(db, farm, None, ROUNDS * 2), timeout=60)
    finally:
        farm.close()
    result = {"stories": stories(db), "alerts": alerts(db)}
    assert len(result["stories"]) == 2 * ROUNDS, "the workload makes one story per topic"
    return result


@pytest.fixture
def farm() -> Iterator[FeedFarm]:
    f = FeedFarm(OUTLETS, delay=0.05)
    yield f
    f.close()


@pytest.fixture
def hook(receiver: Server) -> Server:
    receiver.routes["/hook"] = Reply(200, b"ok")
    return receiver


def _run_rounds(farm: FeedFarm, procs: list[Proc], pace: float,
                on_round: dict[int, Any] | None = None) -> None:
    for rnd in range(1, ROUNDS):
        time.sleep(pace)
        farm.round = rnd
        if on_round and rnd in on_round:
            on_round[rnd]()
        assert any(p.proc.poll() is None for p in procs)


def _settled(db: str, farm: FeedFarm, hook: Server | None, expected: Any) -> bool:
    """Every entry stored and clustered, the alerts made (all, or `expected`), all delivered."""
    try:
        made = alerts(db)
        done = made == expected if isinstance(expected, set) else len(made) == expected
        return (len(entry_guids(db)) >= farm.expected_entries() and done
                and unclustered(db) == 0
                and (hook is None or outbox_keys(db) <= {k for k, _ in delivered(hook)}))
    except OperationalError:  # not migrated yet, or the server is restarting
        return False


def _check(db: str, farm: FeedFarm, hook: Server, expected: dict[str, Any]) -> None:
    assert farm.overlaps() == [], "a feed was fetched by two instances at once"
    guids = entry_guids(db)
    assert len(guids) == len(set(guids)) == farm.expected_entries(), "every entry once"
    assert stories(db) == expected["stories"]
    assert alerts(db) == expected["alerts"]
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for key, body in delivered(hook):
        bodies[key].add(body)
    assert set(bodies) == outbox_keys(db), "every alert change delivered"
    assert all(len(b) == 1 for b in bodies.values()), "a redelivery repeats the same change"


def test_three_instances_make_what_one_makes(tmp_path: Path, pg_url: str, farm: FeedFarm,
                                             hook: Server, single: dict[str, Any]) -> None:
    config = fleet_config(tmp_path, pg_url, farm, hook, lease=LEASE)
    procs = start(tmp_path, config, 3)
    try:
        _run_rounds(farm, procs, pace=0.8)
        wait_until(lambda: _settled(pg_url, farm, hook, single["alerts"]), timeout=60)
        assert min(farm.polls().values()) >= 3, "every feed kept being polled"
    finally:
        kill_all(procs)
    _check(pg_url, farm, hook, single)


def test_killed_instances_lose_nothing(tmp_path: Path, pg_url: str, farm: FeedFarm,
                                       hook: Server, single: dict[str, Any]) -> None:
    config = fleet_config(tmp_path, pg_url, farm, hook, lease=LEASE)
    procs = start(tmp_path, config, 3)
    rng = random.Random(os.getpid())
    try:
        # SIGKILL mid-cycle, first the instance clustering a batch under the ingest lock
        # (what a leader would be), then any: leases and the lock die with the process.
        _run_rounds(farm, procs, pace=0.8, on_round={
            2: lambda: kill_lock_holder(pg_url, procs),
            4: lambda: random_victim(procs, rng).proc.kill()})
        wait_until(lambda: _settled(pg_url, farm, hook, single["alerts"]), timeout=30 + 3 * LEASE)
        assert sum(p.proc.poll() is None for p in procs) == 1
    finally:
        kill_all(procs)
    _check(pg_url, farm, hook, single)


def test_host_politeness_holds_across_instances(tmp_path: Path, pg_url: str,
                                                farm: FeedFarm) -> None:
    """The per-host cap and a host's Retry-After live in the database: three instances
    together keep to one request at a time, and a 429 one of them gets holds them all."""
    config = fleet_config(tmp_path, pg_url, farm, None, lease=LEASE, host_concurrency=1)
    procs = start(tmp_path, config, 3)
    try:
        _run_rounds(farm, procs, pace=0.8)
        wait_until(lambda: min(farm.polls().values(), default=0) >= 3, timeout=60)
        assert farm.most_at_once() == 1, "the host served two polls at once"
        limited = FeedFarm.path(0)
        farm.server.routes[limited] = Reply(429, headers={"Retry-After": "3600"})
        wait_until(lambda: any(h.retry_after_until for (h,) in query(pg_url, select(Host))),
                   timeout=30)

        def requests() -> int:
            return len(farm.server.hits(limited)) + sum(
                n for path, n in farm.polls().items() if path != limited)

        time.sleep(2.0)  # polls claimed before the hold was stored may still finish
        held = requests()
        time.sleep(2.0)  # unheld, the fleet would poll every feed about four times here
        assert requests() == held, "an instance polled a held host"
    finally:
        kill_all(procs)


def _postgres_running() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=True, capture_output=True, timeout=60)


def test_instances_reconnect_after_postgres_restarts(tmp_path: Path, pg_url: str,
                                                     farm: FeedFarm, hook: Server,
                                                     single: dict[str, Any]) -> None:
    need(shutil.which("pg_ctlcluster") is not None and os.path.isdir("/etc/postgresql"),
         "restarting PostgreSQL needs pg_ctlcluster (Debian postgresql-common)")
    config = fleet_config(tmp_path, pg_url, farm, hook, lease=LEASE)
    procs = start(tmp_path, config, 2)
    try:
        _run_rounds(farm, procs, pace=0.8, on_round={3: lambda: _pg_ctl("restart")})
        wait_until(lambda: _settled(pg_url, farm, hook, single["alerts"]), timeout=60)
        assert all(p.proc.poll() is None for p in procs), "instances survive the restart"
    finally:
        kill_all(procs)
        if not _postgres_running():
            _pg_ctl("start")
        wait_until(_postgres_running, timeout=30)
    _check(pg_url, farm, hook, single)
