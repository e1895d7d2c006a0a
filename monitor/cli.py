"""The `storywatch` command: run, demo, check, db, feeds, stories, alerts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor import __version__, logs
from monitor.config import ConfigErrors, Settings, config_path, load_settings
from monitor.yamlpos import SourceError

Handler = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(config_path(args.config))
    if getattr(args, "database", None):
        settings = settings.model_copy(update={"database_url": args.database})
    return settings


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.daemon import Daemon, StartupError

    logs.setup(settings.log.level, settings.log.format)
    try:
        asyncio.run(Daemon(settings).run())
    except StartupError as exc:
        print(f"storywatch: cannot start:\n{exc}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.demo.run import run_demo

    return run_demo(forever=args.forever, duration=args.duration, keep=args.keep,
                    speed=args.speed)


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the config (already loaded) and every rule file."""
    from monitor.rules.schema import RuleErrors, load_rules

    try:
        rules = load_rules(settings.resolved_rules_dir())
    except RuleErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    unknown = [(r.file, r.rule.id, n) for r in rules for n in (r.rule.notify or [])
               if n not in settings.notifiers]
    for file, rule_id, name in unknown:
        print(f"{file}:1:1: rule {rule_id}: notify: unknown notifier {name!r}", file=sys.stderr)
    if unknown:
        return 1
    print(f"ok: {len(settings.feeds)} feeds, {len(rules)} rules, "
          f"{len(settings.notifiers)} notifiers")
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db.engine import make_engine, upgrade

    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    print(f"database at head: {engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_db_upkeep(args: argparse.Namespace, settings: Settings) -> int:
    """Run retention and VACUUM/ANALYZE once, as the daemon does every interval."""
    from datetime import UTC, datetime, timedelta

    from monitor import retention
    from monitor.db.engine import is_current, make_engine, session_factory

    engine = make_engine(settings.resolved_database_url())
    if not is_current(engine):
        raise SystemExit("storywatch: the database is not at the newest migration; "
                         "run `storywatch db upgrade` first")
    done = retention.upkeep(engine, session_factory(engine), settings.retention,
                            timedelta(seconds=settings.stories.window), datetime.now(UTC))
    print(", ".join(f"{kind}: {n}" for kind, n in done.items()) or "retention disabled")
    return 0


def _session(settings: Settings):  # type: ignore[no-untyped-def]
    from monitor.db.engine import is_current, make_engine, session_factory

    engine = make_engine(settings.resolved_database_url())
    if not is_current(engine):
        raise SystemExit("storywatch: the database is not at the newest migration; "
                         "run `storywatch db upgrade` first")
    return session_factory(engine)()


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _when(dt: object) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if hasattr(dt, "strftime") else "-"


def cmd_feeds_list(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db import queries

    with _session(settings) as session:
        feeds = queries.list_feeds(session)
        _table([(f.id, f.state, f.last_outcome or "-", _when(f.next_check_at),
                 f.consecutive_failures, f.name[:40], f.url) for f in feeds],
               ("ID", "STATE", "LAST", "NEXT CHECK", "FAILS", "NAME", "URL"))
    return 0


def cmd_stories_list(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db import queries

    with _session(settings) as session:
        stories = queries.list_stories(session, args.limit, args.min_sources)
        _table([(s.id, s.source_count, s.entry_count, _when(s.first_seen_at),
                 _when(s.last_seen_at), s.title[:80]) for s in stories],
               ("ID", "SOURCES", "ENTRIES", "FIRST SEEN", "LAST SEEN", "TITLE"))
    return 0


def cmd_stories_show(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db import queries
    from monitor.db.models import Story

    with _session(settings) as session:
        story = session.get(Story, args.id)
        if story is None:
            print(f"storywatch: no story {args.id}", file=sys.stderr)
            return 1
        print(f"Story #{story.id}: {story.title}")
        print(f"  first seen {_when(story.first_seen_at)}, last seen "
              f"{_when(story.last_seen_at)}, {story.source_count} sources, "
              f"{story.entry_count} entries")
        for row in queries.story_members(session, story.id):
            m = row.member
            why = m.reason if m.reason != "cluster" else f"cluster score {m.similarity:.3f}"
            shared = m.detail.get("shared")
            print(f"  - [{m.source}] {row.entry.title}")
            print(f"      {row.entry.url or '-'}")
            print(f"      joined {_when(m.joined_at)} by {why}"
                  + (f"; shared: {', '.join(shared)}" if shared else ""))
    return 0


def cmd_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db import queries

    with _session(settings) as session:
        rows = queries.list_alerts(session, args.limit)
        if args.json:
            print(json.dumps([{
                "id": a.id, "rule": a.rule_id, "state": a.state, "seq": a.seq,
                "story_id": a.story_id, "sources": a.sources, "delivered": d, "pending": p,
                "dead": x} for a, d, p, x in rows], indent=2))
            return 0
        _table([(a.id, a.state, a.severity, a.rule_id, a.story_id, a.seq, len(a.sources),
                 f"{d}/{p}/{x}", _when(a.last_changed_at)) for a, d, p, x in rows],
               ("ID", "STATE", "SEVERITY", "RULE", "STORY", "SEQ", "SOURCES",
                "SENT/PENDING/DEAD", "CHANGED"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storywatch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"storywatch {__version__}")
    parser.add_argument("-c", "--config", help="settings file (default: $STORYWATCH_CONFIG, "
                                               "then ./storywatch.yaml)")
    parser.add_argument("--database", help="database URL, overriding the settings file")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help_: str,
            parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
            ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    add("run", cmd_run, "run the daemon")
    demo = add("demo", cmd_demo, "offline demo: sample feeds on 127.0.0.1, alerts on the console")
    demo.add_argument("--forever", action="store_true", help="keep running after the demo")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    demo.add_argument("--keep", action="store_true", help="keep the demo database afterwards")
    demo.add_argument("--speed", type=float, default=1.0,
                      help="replay the sample news this many times faster")
    add("check", cmd_check, "validate the settings and rule files")
    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db", required=True)
    add("upgrade", cmd_db_upgrade, "bring the database to the newest migration", db)
    add("upkeep", cmd_db_upkeep, "prune by retention, then VACUUM and ANALYZE, once", db)
    feeds = sub.add_parser("feeds", help="feeds").add_subparsers(dest="feeds", required=True)
    add("list", cmd_feeds_list, "list feeds and their health", feeds)
    stories = sub.add_parser("stories", help="stories").add_subparsers(dest="stories",
                                                                       required=True)
    sl = add("list", cmd_stories_list, "list recent stories", stories)
    sl.add_argument("--limit", type=int, default=50)
    sl.add_argument("--min-sources", type=int, default=1)
    ss = add("show", cmd_stories_show, "show a story and why each entry belongs to it", stories)
    ss.add_argument("id", type=int)
    alerts = sub.add_parser("alerts", help="alerts").add_subparsers(dest="alerts", required=True)
    al = add("list", cmd_alerts_list, "list alerts and their deliveries", alerts)
    al.add_argument("--limit", type=int, default=50)
    al.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 2
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return 2
    handler: Handler = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
