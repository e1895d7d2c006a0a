"""Helpers for running the daemon in-process or as a subprocess against local servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.db.engine import make_engine, session_factory
from monitor.demo.render import Item, rss
from tests.servers import Reply, Server

ROOT = Path(__file__).resolve().parents[1]


def settings(tmp: Path, server: Server | None = None, feeds: list[dict[str, Any]] | None = None,
             receiver: Server | None = None, rules_dir: Path | None = None,
             **overrides: Any) -> Settings:
    """Settings for a test: SQLite in `tmp`, fast polling, metrics on a free port."""
    doc: dict[str, Any] = {
        "state_dir": str(tmp),
        "rules_dir": str(rules_dir or ROOT / "rules"),
        "feeds": feeds or [],
        "polling": {"min_interval": 0.2, "dispatch_interval": 0.2, "default_interval": 1,
                    "max_interval": 5, "retry_failed_after": 0.5, "timeout": 5,
                    # Test servers live on 127.0.0.1: allowed on purpose (SSRF guard).
                    "allowed_networks": ["127.0.0.0/8"], "host_concurrency": 20,
                    "host_spacing": 0, "parse_workers": 1},
        "delivery": {"interval": 0.2, "backoff_initial": 0.2, "backoff_max": 1},
        "metrics": {"listen": "127.0.0.1:0"},
        "notifiers": {},
    }
    if receiver is not None:
        doc["notifiers"]["hook"] = {"type": "webhook", "url": receiver.url("/hook")}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return Settings.model_validate(doc)


def run_daemon(daemon: Daemon, until: Callable[[], bool], timeout: float = 30.0) -> None:
    """Run the daemon in this thread's event loop until `until()` holds, then stop it.

    `until` runs in a worker thread so it may block (e.g. scrape the daemon's endpoint).
    """
    async def main() -> None:
        task = asyncio.create_task(daemon.run())
        deadline = time.monotonic() + timeout
        try:
            while not await asyncio.to_thread(until):
                if task.done():
                    task.result()
                    raise AssertionError("daemon stopped by itself")
                if time.monotonic() > deadline:
                    raise AssertionError("condition not reached in time")
                await asyncio.sleep(0.1)
        finally:
            daemon.stop()
            await task

    asyncio.run(main())


def count(db_url: str, model: Any, *where: Any) -> int:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where))
                       or 0)
    except Exception:
        return 0
    finally:
        engine.dispose()


def query(db_url: str, stmt: Any) -> list[Any]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return list(session.execute(stmt).all())
    finally:
        engine.dispose()


def seed_feeds(server: Server, seeds: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Serve each seed report as the only item of its own outlet's RSS feed."""
    base = datetime(2025, 3, 19, 5, 0, tzinfo=UTC)
    feeds = []
    for i, (title, body) in enumerate(seeds):
        item = Item(f"seed-{i}", title, body, f"https://outlet{i}.example/news/{i}?utm_source=rss",
                    base + timedelta(minutes=50 * i))
        server.routes[f"/seed{i}.xml"] = Reply(body=rss(f"Outlet {i}", f"https://outlet{i}.example/",
                                                        [item]),
                                               headers={"Content-Type": "application/rss+xml"})
        feeds.append({"url": server.url(f"/seed{i}.xml"), "name": f"Outlet {i}",
                      "tags": ["seed"], "interval": 0.5})
    return feeds


class Proc:
    """`storywatch` as a subprocess, with its output captured to a file."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str] | None = None,
                 group: bool = False) -> None:
        """`group`: in a process group of its own, which `signal_group` signals whole."""
        self.log = tmp / f"proc-{time.monotonic_ns()}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", *args], stdout=self._out,
            stderr=subprocess.STDOUT, cwd=tmp, env={**os.environ, **(env or {})},
            start_new_session=group)

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal every process of the group, as systemd's default KillMode does."""
        os.killpg(self.proc.pid, sig)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen in time:\n{self.output()}")
            time.sleep(0.1)


def write_config(tmp: Path, doc: dict[str, Any]) -> Path:
    path = tmp / "storywatch.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def wait_until(cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def sigterm(proc: Proc) -> int:
    proc.signal(signal.SIGTERM)
    return proc.wait()
