"""Several `storywatch run` processes on one PostgreSQL, fed by one local feed server.

The workload is deterministic: in round r, even-numbered outlets report topic 2r
and odd-numbered ones topic 2r + 1, each in its own words. Every topic is thus
one story with `outlets / 2` sources, whatever order the fetches land in, so a
single instance and a fleet must end with the same stories and alerts.
Shared by tests/test_scaleout.py and bench/scaleout.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from monitor.db.engine import make_engine
from monitor.db.models import Alert, AlertEvent, Delivery, Entry, StoryMember
from monitor.db.queries import INGEST_LOCK
from monitor.demo.render import Item, rss
from tests.helpers import ROOT, Proc, query, write_config
from tests.servers import Reply, Request, Server

PLACES = ("Valdoria", "Kestrel Bay", "Marrow Creek", "Oskana", "Thessaly Ridge", "Brinmoor",
          "Quillon", "Sarnath Falls", "Hollowmere", "Ardent Point", "Pellucid Isle", "Corvale")
EVENTS = ("dam collapse floods farmland", "refinery blaze sends smoke over suburbs",
          "ferry capsizes with commuters aboard", "landslide buries mountain highway",
          "chemical leak forces school evacuations", "bridge cable snaps during rush hour",
          "volcano eruption grounds airline traffic", "hailstorm shreds vineyard harvest",
          "tram derails near cathedral square", "cyberattack cripples hospital records",
          "mine shaft caves trapping miners", "tornado flattens warehouse district")
ROUNDS = len(PLACES) // 2
"""Topics stay distinct (no shared words) for this many rounds."""


def topic_words(topic: int) -> tuple[str, str]:
    return PLACES[topic % len(PLACES)], EVENTS[topic % len(EVENTS)]


class FeedFarm:
    """The feed server: `outlets` feeds revealing one item per round, with request logs."""

    def __init__(self, outlets: int, delay: float = 0.0, started: datetime | None = None) -> None:
        self.outlets = outlets
        self.delay = delay
        self.round = 0
        self.started = started or datetime.now(UTC)
        self.server = Server()
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        """Per feed path: (start, end) of every request, to find overlapping polls."""
        self._lock = threading.Lock()
        for i in range(outlets):
            self.server.routes[self.path(i)] = self._responder(i)

    @staticmethod
    def path(outlet: int) -> str:
        return f"/outlet{outlet}.xml"

    def item(self, outlet: int, rnd: int) -> Item:
        topic = 2 * rnd + outlet % 2
        place, event = topic_words(topic)
        return Item(f"o{outlet}-r{rnd}", f"{place} {event}", f"In {place} today: {event}.",
                    f"https://outlet{outlet}.example/{rnd}",
                    self.started + timedelta(minutes=rnd))

    def body(self, outlet: int) -> bytes:
        items = [self.item(outlet, r) for r in range(self.round + 1)][-10:]
        return rss(f"Outlet {outlet}", f"https://outlet{outlet}.example/", items[::-1])

    def _responder(self, outlet: int) -> Any:
        path = self.path(outlet)

        def respond(_req: Request) -> Reply:
            start = time.monotonic()
            if self.delay:
                time.sleep(self.delay)
            body = self.body(outlet)
            with self._lock:
                self.spans[path].append((start, time.monotonic()))
            return Reply(body=body, headers={"Content-Type": "application/rss+xml"})
        return respond

    def feeds(self, interval: float) -> list[dict[str, Any]]:
        return [{"url": self.server.url(self.path(i)), "name": f"Outlet {i}",
                 "interval": interval} for i in range(self.outlets)]

    def overlaps(self) -> list[str]:
        """Feeds that were ever fetched twice at the same time."""
        bad = []
        with self._lock:
            for path, spans in self.spans.items():
                ordered = sorted(spans)
                if any(b[0] < a[1] for a, b in pairwise(ordered)):
                    bad.append(path)
        return bad

    def most_at_once(self) -> int:
        """The most requests the host (every feed) was serving at one time."""
        with self._lock:
            edges = sorted((t, step) for spans in self.spans.values()
                           for start, end in spans for t, step in ((start, 1), (end, -1)))
        now = most = 0
        for _, step in edges:  # at equal times an end (-1) sorts before a start
            now += step
            most = max(most, now)
        return most

    def polls(self) -> dict[str, int]:
        with self._lock:
            return {p: len(s) for p, s in self.spans.items()}

    def expected_entries(self) -> int:
        return self.outlets * (self.round + 1)

    def close(self) -> None:
        self.server.close()


def rules_dir(tmp: Path) -> Path:
    """Only the corroboration rule: one alert per story, one change per new source."""
    rules = tmp / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "corroborated.yaml").write_text(
        (ROOT / "rules" / "corroborated-story.yaml").read_text())
    return rules


def fleet_config(tmp: Path, db_url: str, farm: FeedFarm, receiver: Server | None,
                 interval: float = 0.5, lease: float = 4.0, **polling: Any) -> Path:
    """One settings file every instance shares; metrics off so they need no ports."""
    doc: dict[str, Any] = {
        "state_dir": str(tmp), "database_url": db_url, "rules_dir": str(rules_dir(tmp)),
        "feeds": farm.feeds(interval),
        "polling": {"min_interval": 0.2, "dispatch_interval": 0.2, "default_interval": interval,
                    "max_interval": interval, "retry_failed_after": 0.5, "timeout": 10,
                    "lease": lease, "allowed_networks": ["127.0.0.0/8"],
                    "host_concurrency": 1000, "host_spacing": 0, "parse_workers": 1,
                    **polling},
        "delivery": {"interval": 0.2, "backoff_initial": 0.2, "backoff_max": 1,
                     "lease": lease},
        "metrics": {"enabled": False},
        "notifiers": {},
    }
    if receiver is not None:
        doc["notifiers"]["hook"] = {"type": "webhook", "url": receiver.url("/hook")}
    return write_config(tmp, doc)


def start(tmp: Path, config: Path, n: int) -> list[Proc]:
    procs = [Proc(tmp, ["-c", str(config), "run"]) for _ in range(n)]
    try:
        for p in procs:
            p.wait_for("storywatch running", timeout=60)
    except AssertionError:
        kill_all(procs)
        raise
    return procs


def kill_all(procs: list[Proc]) -> None:
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
        p.wait()


def random_victim(procs: list[Proc], rng: random.Random) -> Proc:
    return rng.choice([p for p in procs if p.proc.poll() is None])


_HOLDER = text("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
               "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
               "AND l.classid = :high AND l.objid = :low AND l.objsubid = 1")
"""Who holds a bigint advisory lock: PostgreSQL files its high and low halves apart."""


def kill_lock_holder(db_url: str, procs: list[Proc], timeout: float = 15.0) -> Proc:
    """SIGKILL the instance seen holding the ingest lock: the fleet's story stage of the
    moment, mid-batch (each instance names itself `storywatch HOST:PID` to PostgreSQL)."""
    alive = {p.proc.pid: p for p in procs if p.proc.poll() is None}
    engine = make_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                name = conn.execute(_HOLDER, {"high": INGEST_LOCK >> 32,
                                              "low": INGEST_LOCK & 0xFFFF_FFFF}).scalar()
                conn.rollback()  # a fresh snapshot of pg_locks each time
                victim = alive.get(int(name.rpartition(":")[2])) if name else None
                if victim is not None:
                    victim.proc.kill()
                    return victim
                time.sleep(0.002)
    finally:
        engine.dispose()
    raise AssertionError("no instance was seen holding the ingest lock")


# -- what the database ended with --------------------------------------------------
def _members(db_url: str) -> dict[int, frozenset[str]]:
    by_story: dict[int, set[str]] = defaultdict(set)
    for story_id, guid in query(db_url, select(StoryMember.story_id, Entry.guid)
                                .join(Entry, Entry.id == StoryMember.entry_id)):
        by_story[story_id].add(guid)
    return {k: frozenset(v) for k, v in by_story.items()}


def stories(db_url: str) -> set[frozenset[str]]:
    """Each story as the set of its entries' GUIDs: comparable across databases."""
    return set(_members(db_url).values())


def alerts(db_url: str) -> set[tuple[str, frozenset[str], frozenset[str], int]]:
    """(rule, story as its GUIDs, sources, number of alert changes) per alert."""
    members = _members(db_url)
    return {(a.rule_id, members.get(a.story_id or 0, frozenset()), frozenset(a.sources), a.seq)
            for (a,) in query(db_url, select(Alert))}


def unclustered(db_url: str) -> int:
    """Entries stored but not yet in a story (the story stage has not got to them)."""
    return len(query(db_url, select(Entry.id).where(Entry.story_id.is_(None),
                                                    Entry.tombstone_seen_at.is_(None))))


def entry_guids(db_url: str) -> list[str]:
    return [g for (g,) in query(db_url, select(Entry.guid))]


def outbox_keys(db_url: str) -> set[str]:
    return {k for (k,) in query(db_url, select(Delivery.idempotency_key)
                                .join(AlertEvent, AlertEvent.id == Delivery.event_id))}


def delivered(receiver: Server) -> Iterator[tuple[str, bytes]]:
    for r in receiver.hits("/hook"):
        yield r.headers["idempotency-key"], r.body
