"""The whole pipeline in-process: real feed server, real SQLite file, real webhook receiver."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from sqlalchemy import select

from monitor.daemon import Daemon
from monitor.db.models import Alert, Entry, Feed, Story, StoryMember
from tests.helpers import count, query, run_daemon, seed_feeds, settings
from tests.servers import Reply, Server

ENERGY_RULE = "energy-strike-after-ceasefire"


def test_seeds_become_one_story_with_five_sources_and_one_alert(
        tmp_path: Path, server: Server, receiver: Server,
        seeds: list[tuple[str, str]]) -> None:
    feeds = seed_feeds(server, seeds)
    cfg = settings(tmp_path, feeds=feeds, receiver=receiver)
    db = cfg.resolved_database_url()
    daemon = Daemon(cfg)

    def energy_updates() -> list[dict[str, object]]:
        return [r.json() for r in receiver.hits("/hook")
                if r.json()["rule"]["id"] == ENERGY_RULE]

    def done() -> bool:
        polls = all(len(server.hits(f"/seed{i}.xml")) >= 3 for i in range(5))
        return polls and len({p["seq"] for p in energy_updates()}) >= 4

    run_daemon(daemon, done, timeout=60)

    assert count(db, Entry) == 5, "every fetched entry is stored exactly once"
    stories = query(db, select(Story.id, Story.source_count, Story.entry_count))
    assert [(s.source_count, s.entry_count) for s in stories] == [(5, 5)]
    alerts = query(db, select(Alert).where(Alert.rule_id == ENERGY_RULE))
    assert len(alerts) == 1
    alert = alerts[0][0]
    assert sorted(alert.sources) == [f"Outlet {i}" for i in range(5)]
    assert alert.seq == 4, "fired at the second source, then one update per new source"

    payloads = energy_updates()
    by_seq = {p["seq"]: p for p in payloads}
    assert sorted(by_seq) == [1, 2, 3, 4]
    assert by_seq[1]["event"] == "firing"
    assert all(by_seq[s]["event"] == "updated" for s in (2, 3, 4))
    assert {p["fingerprint"] for p in payloads} == {alert.fingerprint}
    assert len({p["idempotency_key"] for p in by_seq.values()}) == 4
    assert len(by_seq[4]["sources"]) == 5
    for req in receiver.hits("/hook"):
        assert req.headers["idempotency-key"] == req.json()["idempotency_key"]
        assert req.headers["content-type"] == "application/json"

    later = [r for i in range(5) for r in server.hits(f"/seed{i}.xml")[1:]]
    assert later and all(r.headers.get("if-none-match") for r in later), "conditional GET"

    reasons = query(db, select(StoryMember.reason))
    assert sorted(r.reason for r in reasons).count("new_story") == 1


def test_bad_feeds_are_counted_and_do_not_stop_good_ones(
        tmp_path: Path, server: Server) -> None:
    from monitor.demo.render import Item, rss

    good = rss("Good", "https://good.example/", [Item("g1", "Harbour reopens", "Text.")])
    server.routes["/good.xml"] = Reply(body=good)
    server.routes["/garbage.xml"] = Reply(body=b"\x00\x01 this is not xml at all")
    server.routes["/html.xml"] = Reply(body=b"<html><body>Blocked?</body></html>",
                                       headers={"Content-Type": "text/html"})
    server.routes["/empty.xml"] = Reply(body=b"")
    server.routes["/huge.xml"] = Reply(body=b"<rss>" + b" " * 3_000_000)
    server.routes["/hang.xml"] = Reply(body=b"<rss/>", delay=3)
    server.routes["/error.xml"] = Reply(500, b"oops")
    names = ["good", "garbage", "html", "empty", "huge", "hang", "error"]
    feeds = [{"url": server.url(f"/{n}.xml"), "name": n, "interval": 0.5} for n in names]
    cfg = settings(tmp_path, feeds=feeds, polling={"timeout": 1, "max_body_bytes": 1_000_000})
    daemon = Daemon(cfg)
    db = cfg.resolved_database_url()
    scraped: list[str] = []

    def done() -> bool:
        if not all(len(server.hits(f"/{n}.xml")) >= 2 for n in names if n != "hang"):
            return False
        # A hit is not yet a stored outcome: a parse failing while the daemon stops is
        # put down to the stop, not to the feed (see `Daemon._poll`).
        if dict(query(db, select(Feed.name, Feed.consecutive_failures))).get("garbage", 0) < 2:
            return False
        url = f"http://127.0.0.1:{daemon.web.port}/metrics"
        scraped.append(urllib.request.urlopen(url, timeout=5).read().decode())
        return True

    run_daemon(daemon, done, timeout=60)
    assert count(db, Entry) == 1
    states = dict(query(db, select(Feed.name, Feed.last_outcome)))
    assert states["good"] in ("ok", "not_modified")
    assert states["garbage"] == states["html"] == states["empty"] == "parse_error"
    assert states["huge"] == "too_large"
    assert states["error"] == "http_5xx"
    metrics = scraped[-1]
    for outcome in ("parse_error", "too_large", "http_5xx"):
        line = next(ln for ln in metrics.splitlines()
                    if ln.startswith(f'storywatch_feed_fetches_total{{outcome="{outcome}"}}'))
        assert float(line.split()[-1]) >= 1
    failures = dict(query(db, select(Feed.name, Feed.consecutive_failures)))
    assert failures["good"] == 0 and failures["garbage"] >= 2


def test_health_endpoints(tmp_path: Path) -> None:
    daemon = Daemon(settings(tmp_path))
    bodies: dict[str, bytes] = {}

    def probe() -> bool:
        for path in ("healthz", "readyz"):
            url = f"http://127.0.0.1:{daemon.web.port}/{path}"
            with urllib.request.urlopen(url, timeout=5) as resp:
                bodies[path] = resp.read()
        return True

    run_daemon(daemon, lambda: daemon._ready and probe())
    assert b'"status":"ok"' in bodies["healthz"]
    assert b'"ready"' in bodies["readyz"] and b'"database": "ok"' in bodies["readyz"]
