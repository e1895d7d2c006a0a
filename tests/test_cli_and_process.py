"""The `storywatch` command as users run it: check, db upgrade, lists, run with signals, demo."""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from monitor.db.models import Alert, Feed
from monitor.demo.render import Item, rss
from monitor.demo.run import SAMPLE
from monitor.demo.server import DemoFeedServer, load_outlets
from tests.helpers import ROOT, Proc, count, query, sigterm, wait_until, write_config
from tests.servers import Reply, Server


def storywatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_accepts_the_shipped_rules(tmp_path: Path) -> None:
    write_config(tmp_path, {"rules_dir": str(ROOT / "rules")})
    result = storywatch("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 0 feeds, ")


def test_check_reports_file_line_col(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("id: r\ntitle: t\nwhere:\n  all:\n    - {contains: x, "
                                    "oops: 1}\n")
    write_config(tmp_path, {"rules_dir": "rules"})
    result = storywatch("check", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{rules / 'bad.yaml'}:5:21: where.all.0.oops: unknown key" in result.stderr


def test_check_reports_bad_config(tmp_path: Path) -> None:
    (tmp_path / "storywatch.yaml").write_text("feeds:\n  - name: no url\n")
    result = storywatch("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "storywatch.yaml:2:5: feeds.0.url: Field required" in result.stderr


def test_db_upgrade_and_empty_lists(tmp_path: Path) -> None:
    write_config(tmp_path, {"database_url": f"sqlite:///{tmp_path / 'x.db'}"})
    assert storywatch("db", "upgrade", cwd=tmp_path).returncode == 0
    assert storywatch("db", "upgrade", cwd=tmp_path).returncode == 0, "idempotent"
    for cmd in (("feeds", "list"), ("stories", "list"), ("alerts", "list")):
        result = storywatch(*cmd, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == "ID"


def test_daemon_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path, server: Server) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text("id: rule-a\ntitle: A\nwhere: {any: [{contains: tulip}]}\n")
    server.routes["/f.xml"] = Reply(body=rss("F", "https://f.example/", []))
    port = free_port()
    write_config(tmp_path, {
        "rules_dir": "rules",
        "feeds": [{"url": server.url("/f.xml"), "name": "F", "interval": 0.3}],
        "polling": {"min_interval": 0.2, "dispatch_interval": 0.2,
                    "allowed_networks": ["127.0.0.0/8"]},
        "notifiers": {"out": {"type": "console"}},
        "metrics": {"listen": f"127.0.0.1:{port}"},
    })
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"
    proc = Proc(tmp_path, ["run"])
    proc.wait_for("storywatch running")

    (rules / "b.yaml").write_text("id: rule-b\ntitle: B\nwhere: {any: [{contains: crocus}]}\n")
    proc.signal(signal.SIGHUP)
    proc.wait_for("rules=2")

    (rules / "c.yaml").write_text("id: rule-c\ntitle: C\nwhere: {any: [{regex: '(broken'}]}\n")
    proc.signal(signal.SIGHUP)
    proc.wait_for("rule reload failed")
    assert "c.yaml:3:" in proc.output()

    server.routes["/f.xml"] = Reply(body=rss("F", "https://f.example/", [
        Item("1", "Crocus festival opens", "Crowds came.")]))
    wait_until(lambda: count(db, Alert) == 1)
    assert [r.rule_id for (r,) in query(db, select(Alert))] == ["rule-b"]
    proc.wait_for("[ALERT]")

    assert sigterm(proc) == 0
    assert "stopped" in proc.output()
    assert "raised an exception" not in proc.output(), "no tick is cancelled by the stop"
    assert query(db, select(Feed.lease_owner)) == [(None,)]


SLOW_TO_PARSE = (b"<rss version='2.0'><channel><title>t</title><item><title>x</title><author>"
                 + b"a" * 40_000 + b"</author></item></channel>")
"""Not well-formed, so it reaches feedparser's quadratic e-mail regex: seconds of parsing."""


def test_stop_signal_to_the_whole_group_is_not_a_feed_failure(tmp_path: Path,
                                                              server: Server) -> None:
    """systemd signals every process of the unit: a parser killed by the stop is no parse error."""
    server.routes["/slow.xml"] = Reply(body=SLOW_TO_PARSE)
    (tmp_path / "rules").mkdir()
    write_config(tmp_path, {
        "rules_dir": "rules",
        "feeds": [{"url": server.url("/slow.xml"), "name": "Slow"}],
        "polling": {"parse_timeout": 60, "allowed_networks": ["127.0.0.0/8"]},
        "metrics": {"enabled": False},
    })
    db = f"sqlite:///{tmp_path / 'storywatch.db'}"
    proc = Proc(tmp_path, ["run"], group=True)
    proc.wait_for("storywatch running")
    wait_until(lambda: len(server.hits("/slow.xml")) == 1)
    threading.Event().wait(0.5)  # the body is in a parser process now
    proc.signal_group(signal.SIGTERM)
    assert proc.wait() == 0, proc.output()
    assert "feed fetch failed" not in proc.output()
    [(outcome, failures, lease)] = query(db, select(Feed.last_outcome, Feed.consecutive_failures,
                                                    Feed.lease_owner))
    assert (outcome, failures, lease) == (None, 0, None), "untouched, due again at the next start"


def test_daemon_refuses_to_start_with_broken_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text("id: a\ntitle: [\n")
    write_config(tmp_path, {"rules_dir": "rules", "metrics": {"enabled": False}})
    result = storywatch("run", cwd=tmp_path)
    assert result.returncode == 1
    assert "a.yaml:3:1: YAML syntax error" in result.stderr


def test_demo_shows_stories_and_alerts(tmp_path: Path) -> None:
    result = storywatch("demo", "--speed", "6", "--duration", "25", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "new story #" in out
    assert "[ALERT] HIGH Energy infrastructure strike reported after a ceasefire" in out
    assert "[UPDATE]" in out
    # The energy strike: five outlets; the local-angle Kresk report scores at the
    # threshold (0.14-0.17 by arrival order), so it may or may not join.
    assert re.search(r"[45] sources: .*(energy|power|Morvath)", out)
    assert "Summary: 4 stories reported by two or more outlets" in out


def test_demo_news_is_dated_as_if_it_had_just_happened() -> None:
    """Clustering forgets stories older than its window, measured from now."""
    outlets = load_outlets(SAMPLE)
    server = DemoFeedServer(outlets)
    before = sorted(it.published for o in outlets for _, it in o.items if it.published)
    after = sorted(it.published for o in server.outlets.values() for _, it in o.items
                   if it.published)
    assert abs((after[-1] - datetime.now(UTC)).total_seconds()) < 60
    assert [b - a for a, b in itertools.pairwise(after)] == [
        b - a for a, b in itertools.pairwise(before)]
    server.httpd.server_close()
