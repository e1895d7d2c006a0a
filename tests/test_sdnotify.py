"""The daemon speaks sd_notify to a real datagram socket, and its watchdog tells the truth.

Runs `storywatch run` as a subprocess with `NOTIFY_SOCKET` and `WATCHDOG_USEC`
set the way systemd sets them, then checks the READY → WATCHDOG → RELOADING →
READY → STOPPING sequence and that pings stop while the loop or database is stuck.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.demo.render import Item, rss
from tests.helpers import ROOT, Proc, write_config
from tests.notify import NotifySocket
from tests.servers import Reply, Server

WATCHDOG_USEC = 1_000_000
"""1 s: the daemon pings every 0.5 s and counts a tick older than 2 s as stalled."""
QUIET = 3.0
"""How long a stuck daemon must stay silent: six ping intervals."""


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def daemon(tmp_path: Path, server: Server, notify: NotifySocket) -> Iterator[Proc]:
    proc = start(tmp_path, server, notify)
    yield proc
    if proc.proc.poll() is None:
        proc.proc.kill()
        proc.wait()


def start(tmp_path: Path, server: Server, notify: NotifySocket) -> Proc:
    server.routes["/feed.xml"] = Reply(body=rss("Wire", "https://wire.example/", [
        Item("w-1", "Port workers strike", "Dockers stopped work.", "https://wire.example/1",
             datetime(2026, 1, 1, tzinfo=UTC))]), headers={"Content-Type": "application/rss+xml"})
    config = write_config(tmp_path, {
        "state_dir": str(tmp_path), "rules_dir": str(ROOT / "rules"),
        "feeds": [{"url": server.url("/feed.xml"), "interval": 0.2}],
        "polling": {"min_interval": 0.2, "dispatch_interval": 0.2},
        "metrics": {"listen": "127.0.0.1:0"},
    })
    return Proc(tmp_path, ["-c", str(config), "run"], env={
        "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "STORYWATCH_TEST_FREEZE_FILE": str(tmp_path / "freeze")})


def assert_silent_while_stuck(notify: NotifySocket) -> None:
    """Let a ping already under way land, then require silence for QUIET seconds."""
    time.sleep(1.0)
    before = notify.count("WATCHDOG=1")
    time.sleep(QUIET)
    assert notify.count("WATCHDOG=1") == before, "watchdog pinged while the daemon was stuck"


@pytest.mark.slow
def test_notify_sequence_and_watchdog_on_a_frozen_loop(tmp_path: Path, daemon: Proc,
                                                      notify: NotifySocket) -> None:
    ready = notify.wait_for("READY=1")
    status = [ln for ln in notify.lines()[: ready + 2] if ln.startswith("STATUS=")]
    assert status and "feeds" in status[0] and "pending alerts" in status[0]
    first_ping = notify.wait_for("WATCHDOG=1", after=ready)
    notify.wait_for("WATCHDOG=1", after=first_ping + 1)

    (tmp_path / "freeze").touch()  # the next dispatch tick blocks the event loop
    assert_silent_while_stuck(notify)
    (tmp_path / "freeze").unlink()
    resumed = notify.wait_for("WATCHDOG=1", after=len(notify.lines()))

    daemon.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING=1", after=resumed)
    assert notify.lines()[reloading + 1].startswith("MONOTONIC_USEC=")
    notify.wait_for("READY=1", after=reloading)

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.output()
    lines = notify.lines()
    assert lines.index("READY=1") < lines.index("WATCHDOG=1")
    assert "WATCHDOG=1" not in lines[lines.index("STOPPING=1"):]


@pytest.mark.slow
def test_watchdog_stops_while_the_database_is_locked(tmp_path: Path, daemon: Proc,
                                                     notify: NotifySocket) -> None:
    notify.wait_for("WATCHDOG=1", after=notify.wait_for("READY=1"))
    holder = sqlite3.connect(tmp_path / "storywatch.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        assert_silent_while_stuck(notify)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    notify.wait_for("WATCHDOG=1", after=len(notify.lines()))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.output()
    assert "database did not answer in time" in daemon.output()
