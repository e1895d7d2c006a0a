"""The daemon's polling against real local servers: redirects, holds, states, politeness."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from monitor.daemon import Daemon
from monitor.db import queries
from monitor.db.engine import make_engine, session_factory
from monitor.db.models import Entry, Feed, Host
from monitor.demo.render import Item, rss
from monitor.metrics import REGISTRY
from tests.helpers import count, query, run_daemon, settings
from tests.servers import Reply, Request, Server

NOW = datetime.now(UTC)
BODY = rss("F", "https://f.example/", [
    Item(f"id-{i}", f"Headline {i}", "Text.", f"https://f.example/{i}",
         NOW - timedelta(minutes=5 * i)) for i in range(3)])


def feed_row(db: str) -> Feed:
    [(feed,)] = query(db, select(Feed))
    return feed  # type: ignore[no-any-return]


def run(tmp: Path, server: Server, paths: list[str], until: Any, **polling: Any) -> str:
    feeds = [{"url": server.url(p), "name": p, "interval": 0.3} for p in paths]
    cfg = settings(tmp, feeds=feeds, polling=polling)
    run_daemon(Daemon(cfg), until, timeout=30)
    return cfg.resolved_database_url()


def test_permanent_redirect_adopted_once_stable(tmp_path: Path, server: Server) -> None:
    server.routes["/old"] = Reply(301, headers={"Location": "/mid"})
    server.routes["/mid"] = Reply(308, headers={"Location": "/new"})
    server.routes["/new"] = Reply(body=BODY)
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"

    def moved() -> bool:
        return count(db, Feed, Feed.url == server.url("/new")) == 1

    run(tmp_path, server, ["/old"], moved)
    feed = feed_row(db)
    assert feed.original_url == server.url("/old")
    assert len(server.hits("/old")) >= 2, "adopted only after the target was seen twice"
    assert count(db, Entry) == 3


def test_temporary_redirect_keeps_the_old_url(tmp_path: Path, server: Server) -> None:
    server.routes["/feed"] = Reply(302, headers={"Location": "/today"})
    server.routes["/today"] = Reply(body=BODY)
    db = run(tmp_path, server, ["/feed"], lambda: len(server.hits("/today")) >= 3)
    assert feed_row(db).url == server.url("/feed")


def test_gone_disables_and_challenge_blocks(tmp_path: Path, server: Server) -> None:
    server.routes["/gone"] = Reply(410)
    server.routes["/cf"] = Reply(403, b"Just a moment", headers={"cf-mitigated": "challenge"})
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"
    run(tmp_path, server, ["/gone", "/cf"],
        lambda: count(db, Feed, Feed.state.in_(["gone", "blocked"])) == 2)
    states = dict(query(db, select(Feed.url, Feed.state)))
    assert states[server.url("/gone")] == "gone"
    assert states[server.url("/cf")] == "blocked"
    assert count(db, Feed, Feed.enabled.is_(False)) == 1


def test_retry_after_holds_the_whole_host_in_the_database(tmp_path: Path,
                                                         server: Server) -> None:
    server.routes["/limited"] = Reply(429, headers={"Retry-After": "3600"})
    server.routes["/other"] = Reply(body=BODY)
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"
    run(tmp_path, server, ["/limited", "/other"], lambda: count(db, Host) == 1)
    [(host,)] = query(db, select(Host))
    assert host.host == "127.0.0.1" and host.last_status == 429
    assert host.retry_after_until > datetime.now(UTC) + timedelta(minutes=55)
    engine = make_engine(db)
    with session_factory(engine).begin() as session:
        later = datetime.now(UTC) + timedelta(minutes=30)
        claimed, oldest = queries.claim_due_feeds(session, "t", later, 10,
                                                  timedelta(minutes=1))
        assert claimed == [] and oldest is None, "no feed of a held host is claimed"
        session.rollback()
    engine.dispose()


def test_unchanged_body_is_not_parsed_again(tmp_path: Path, server: Server) -> None:
    server.routes["/plain"] = Reply(body=BODY, etag=False)  # no validators at all
    db = run(tmp_path, server, ["/plain"], lambda: len(server.hits("/plain")) >= 3)
    feed = feed_row(db)
    assert feed.last_outcome == "not_modified" and feed.body_hash
    assert count(db, Entry) == 3


def test_user_agent_names_the_contact(tmp_path: Path, server: Server) -> None:
    server.routes["/ua"] = Reply(body=BODY)
    run(tmp_path, server, ["/ua"], lambda: len(server.hits("/ua")) >= 1,
        contact="https://ops.example/storywatch")
    agent = server.hits("/ua")[0].headers["user-agent"]
    assert agent.startswith("Storywatch/") and "https://ops.example/storywatch" in agent


def test_private_addresses_refused_by_default(tmp_path: Path, server: Server) -> None:
    server.routes["/internal"] = Reply(body=BODY)
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"
    run(tmp_path, server, ["/internal"], lambda: count(db, Feed, Feed.state == "failing") == 1,
        allowed_networks=[])
    assert "loopback" in (feed_row(db).last_error or "")
    assert server.hits("/internal") == []


def test_failing_feed_is_suspended_then_retried_quietly(tmp_path: Path,
                                                       server: Server) -> None:
    server.routes["/broken"] = Reply(500)
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"
    run(tmp_path, server, ["/broken"], lambda: count(db, Feed, Feed.state == "suspended") == 1,
        suspend_after_failures=2, suspend_after=0, suspended_retry="1h")
    feed = feed_row(db)
    assert feed.enabled and feed.consecutive_failures >= 2
    assert feed.next_check_at > datetime.now(UTC) + timedelta(minutes=50)


def test_per_host_cap_is_never_exceeded(tmp_path: Path, server: Server) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow(_req: Request) -> Reply:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return Reply(body=BODY)

    paths = [f"/h{i}" for i in range(4)]
    for p in paths:
        server.routes[p] = slow
    run(tmp_path, server, paths, lambda: all(len(server.hits(p)) >= 2 for p in paths),
        host_concurrency=1)
    assert state["max"] == 1


def test_no_url_in_any_metric_label(tmp_path: Path, server: Server) -> None:
    server.routes["/m"] = Reply(body=BODY)
    run(tmp_path, server, ["/m"], lambda: len(server.hits("/m")) >= 2)
    assert REGISTRY.get_sample_value("storywatch_feed_fetches_total", {"outcome": "ok"})
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            assert not any("://" in str(v) or "127.0.0.1" in str(v)
                           for v in sample.labels.values())
