"""`storywatch demo`: the whole pipeline offline, on a temporary SQLite database.

Five sample outlets publish over about 45 seconds; the daemon polls them
every few seconds, stories form as outlets report the same events in their
own words, and the shipped rules raise alerts on the console.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from monitor import logs
from monitor.config import ConsoleNotifier, FeedConfig, MetricsConfig, PollingConfig, Settings
from monitor.daemon import Daemon
from monitor.demo.server import DemoFeedServer, load_outlets
from monitor.resources import shipped_rules_dir
from monitor.storystage import StageReport

SAMPLE = Path(__file__).with_name("sample_news.yaml")
POLL_SECONDS = 3.0


def demo_settings(server: DemoFeedServer, state_dir: Path, poll: float) -> Settings:
    feeds = [FeedConfig(url=server.url(o.slug), name=o.name, tags=o.tags, interval=poll)
             for o in server.outlets.values()]
    return Settings(
        state_dir=str(state_dir),
        rules_dir=str(shipped_rules_dir()),
        feeds=feeds,
        notifiers={"console": ConsoleNotifier(type="console")},
        polling=PollingConfig(min_interval=0.5, dispatch_interval=0.5, retry_failed_after=2,
                              allowed_networks=["127.0.0.0/8"], host_concurrency=20,
                              host_spacing=0),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
    )


def _say(line: str) -> None:
    print(line, flush=True)


async def _main(speed: float, duration: float | None, state_dir: Path) -> None:
    server = DemoFeedServer(load_outlets(SAMPLE), speed=speed)
    server.start()
    settings = demo_settings(server, state_dir, max(0.5, POLL_SECONDS / speed))

    def on_report(report: StageReport) -> None:
        for line in report.events:
            _say(f"  {line}")

    daemon = Daemon(settings, on_report=on_report)
    _say(f"Storywatch demo: {len(server.outlets)} sample outlets on http://127.0.0.1:"
         f"{server.port}/feeds/, database {settings.resolved_database_url()}")
    _say(f"Rules from {settings.rules_dir}; news arrives over "
         f"{server.last_offset() / speed:.0f}s. Ctrl-C stops.\n")
    runner = asyncio.create_task(daemon.run())
    started = time.monotonic()
    try:
        while not runner.done():
            await asyncio.sleep(0.5)
            if duration is not None and time.monotonic() - started >= duration:
                break
    finally:
        daemon.stop()
        await runner
        server.stop()


def run_demo(forever: bool = False, duration: float = 60.0, keep: bool = False,
             speed: float = 1.0) -> int:
    logs.setup("warning")
    state_dir = Path(tempfile.mkdtemp(prefix="storywatch-demo-"))
    try:
        asyncio.run(_main(speed, None if forever else duration, state_dir))
        _summary(state_dir)
    except KeyboardInterrupt:
        pass
    finally:
        if keep:
            print(f"\nDemo database kept in {state_dir}", file=sys.stderr)
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def _summary(state_dir: Path) -> None:
    from monitor.db import queries
    from monitor.db.engine import make_engine, session_factory

    engine = make_engine(f"sqlite:///{state_dir / 'storywatch.db'}")
    with session_factory(engine)() as session:
        stories = queries.list_stories(session, 100, min_sources=2)
        alerts = queries.list_alerts(session, 100)
    engine.dispose()
    _say(f"\nSummary: {len(stories)} stories reported by two or more outlets, "
         f"{len(alerts)} alerts")
    for s in stories:
        _say(f"  #{s.id} {s.source_count} sources: {s.title}")
    for a, delivered, pending, dead in alerts:
        _say(f"  alert {a.rule_id} story #{a.story_id}: {a.state}, {a.seq} change(s), "
             f"{delivered} delivered, {pending} pending, {dead} dead")
