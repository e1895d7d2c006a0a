"""The `storywatch` command: run, demo, check, db, feeds, stories, alerts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor import __version__, cli_rules, logs
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
    """Validate the config (already loaded) and lint every rule file."""
    from monitor.cli_rules import cmd_lint

    return cmd_lint(args, settings)


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
    from monitor.rules.engine import RuleSet
    from monitor.rules.live import RuleRunner
    from monitor.rules.schema import RuleErrors

    engine = make_engine(settings.resolved_database_url())
    if not is_current(engine):
        raise SystemExit("storywatch: the database is not at the newest migration; "
                         "run `storywatch db upgrade` first")
    runner = None
    try:  # which rule state is spent depends on the rules
        rules = RuleSet.load(settings.resolved_rules_dir())
        runner = RuleRunner(lambda: rules, list, list)
    except RuleErrors as exc:
        print(f"storywatch: rule state is not pruned, the rules do not load:\n{exc}",
              file=sys.stderr)
    done = retention.upkeep(engine, session_factory(engine), settings.retention,
                            timedelta(seconds=settings.stories.window), datetime.now(UTC),
                            runner)
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


def _feed_or_fail(session, ref: str):  # type: ignore[no-untyped-def]
    from monitor.db import queries

    feed = queries.find_feed(session, ref)
    if feed is None:
        print(f"storywatch: no feed {ref!r} (give an id or a URL)", file=sys.stderr)
    return feed


def cmd_feeds_add(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from monitor.config import parse_duration
    from monitor.db import queries

    try:
        interval = parse_duration(args.interval) if args.interval else None
    except ValueError as exc:
        print(f"storywatch: --interval: {exc}", file=sys.stderr)
        return 2
    with _session(settings) as session, session.begin():
        feed = queries.upsert_feed(session, args.url, args.name or args.url, args.tag or [],
                                   interval, True, datetime.now(UTC))
        print(f"feed {feed.id}: {feed.url}")
    return 0


def cmd_feeds_remove(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db import queries

    with _session(settings) as session, session.begin():
        feed = _feed_or_fail(session, args.feed)
        if feed is None:
            return 1
        queries.delete_feed(session, feed)
        print(f"removed feed {feed.id}: {feed.url}")
    return 0


def _set_enabled(args: argparse.Namespace, settings: Settings, enabled: bool) -> int:
    from datetime import UTC, datetime

    with _session(settings) as session, session.begin():
        feed = _feed_or_fail(session, args.feed)
        if feed is None:
            return 1
        feed.enabled = enabled
        feed.state = "active" if enabled else "disabled"
        if enabled:
            feed.consecutive_failures, feed.first_failure_at = 0, None
            feed.next_check_at = datetime.now(UTC)
        print(f"feed {feed.id} {'enabled' if enabled else 'disabled'}: {feed.url}")
    return 0


def cmd_feeds_enable(args: argparse.Namespace, settings: Settings) -> int:
    return _set_enabled(args, settings, True)


def cmd_feeds_disable(args: argparse.Namespace, settings: Settings) -> int:
    return _set_enabled(args, settings, False)


def cmd_feeds_show(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db.models import Host

    with _session(settings) as session:
        f = _feed_or_fail(session, args.feed)
        if f is None:
            return 1
        host = session.get(Host, f.host)
        rows = [
            ("id", f.id), ("url", f.url), ("original url", f.original_url),
            ("name", f.name), ("tags", ", ".join(map(str, f.tags)) or None),
            ("state", f.state), ("enabled", "yes" if f.enabled else "no"),
            ("last status", f.last_status), ("last outcome", f.last_outcome),
            ("last error", f.last_error), ("last checked", _when(f.last_checked_at)),
            ("last success", _when(f.last_success_at)), ("next check", _when(f.next_check_at)),
            ("failures", f"{f.consecutive_failures}"
             + (f" since {_when(f.first_failure_at)}" if f.first_failure_at else "")),
            ("interval", f"{f.poll_interval:g}s" if f.poll_interval else None),
            ("host held until", _when(host.retry_after_until)
             if host and host.retry_after_until else None),
        ]
        for label, value in rows:
            print(f"{label + ':':17} {'-' if value is None else value}")
    return 0


def cmd_feeds_import(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from monitor.db import queries
    from monitor.feeds.opml import OpmlError, parse_opml

    try:
        feeds = parse_opml(Path(args.file).read_bytes())
    except OSError as exc:
        print(f"storywatch: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    except OpmlError as exc:
        print(f"storywatch: {args.file}: {exc}", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    with _session(settings) as session, session.begin():
        for f in feeds:
            queries.upsert_feed(session, f.url, f.title or f.url, list(f.tags), None, True, now)
    print(f"imported {len(feeds)} feeds from {args.file}")
    return 0


def cmd_feeds_export(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db import queries
    from monitor.feeds.opml import OpmlFeed, to_opml

    with _session(settings) as session:
        data = to_opml(OpmlFeed(f.url, f.name, tuple(map(str, f.tags)))
                       for f in queries.list_feeds(session))
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
    else:
        Path(args.output).write_bytes(data)
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


def cmd_alerts_dead(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.db import queries

    with _session(settings) as session:
        rows = queries.dead_letters(session, args.limit)
        _table([(d.id, ev.alert_id, ev.kind, d.notifier, d.attempts, _when(d.dead_at),
                 (d.last_error or "-")[:80]) for d, ev in rows],
               ("DELIVERY", "ALERT", "CHANGE", "NOTIFIER", "ATTEMPTS", "DEAD SINCE", "ERROR"))
    return 0


def cmd_alerts_retry(args: argparse.Namespace, settings: Settings) -> int:
    """Re-queue a dead letter; the running daemon picks it up on its next delivery tick."""
    from datetime import UTC, datetime

    from monitor.db import queries

    with _session(settings) as session, session.begin():
        row = queries.requeue(session, args.id, datetime.now(UTC))
        if row is None:
            print(f"storywatch: delivery {args.id} is not a dead letter "
                  "(see `storywatch alerts dead`)", file=sys.stderr)
            return 1
        print(f"delivery {row.id} to {row.notifier} re-queued")
    return 0


def cmd_alerts_preview(args: argparse.Namespace, settings: Settings) -> int:
    """Render every notifier's message for one rule from a fixture story."""
    from monitor.alerts.notify import NotifierUnavailable
    from monitor.alerts.preview import load_fixture, preview
    from monitor.alerts.render import RenderError
    from monitor.rules.schema import RuleErrors, load_rules

    try:
        rules = {lr.rule.id: lr.rule for lr in load_rules(settings.resolved_rules_dir())}
        fixture = load_fixture(Path(args.fixture) if args.fixture else None)
    except RuleErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"storywatch: {exc}", file=sys.stderr)
        return 1
    if args.rule not in rules:
        print(f"storywatch: no rule {args.rule!r} (known: {', '.join(sorted(rules))})",
              file=sys.stderr)
        return 1
    try:
        rendered = preview(rules[args.rule], dict(settings.notifiers), fixture)
    except (RenderError, NotifierUnavailable) as exc:
        print(f"storywatch: {exc}", file=sys.stderr)
        return 1
    if not rendered:
        print("storywatch: the rule reaches no configured notifier", file=sys.stderr)
        return 1
    for name, kind, text in rendered:
        print(f"--- {name} ({kind}) ---\n{text}\n")
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
    cli_rules.register(sub, add)
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
    fa = add("add", cmd_feeds_add, "add a feed (or update its name and tags)", feeds)
    fa.add_argument("url")
    fa.add_argument("--name")
    fa.add_argument("--tag", action="append", help="a tag (repeatable)")
    fa.add_argument("--interval", help="poll interval such as 30m (default: adaptive)")
    for name, handler, help_ in (
            ("remove", cmd_feeds_remove, "remove a feed and its entries"),
            ("enable", cmd_feeds_enable, "enable a feed and poll it now"),
            ("disable", cmd_feeds_disable, "stop polling a feed"),
            ("show", cmd_feeds_show, "show a feed's health: status, error, next check")):
        add(name, handler, help_, feeds).add_argument("feed", help="feed id or URL")
    add("import", cmd_feeds_import, "import feeds from an OPML file",
        feeds).add_argument("file")
    add("export", cmd_feeds_export, "export feeds as OPML", feeds).add_argument(
        "-o", "--output", help="file to write (default: standard output)")
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
    ad = add("dead", cmd_alerts_dead, "list dead-lettered deliveries", alerts)
    ad.add_argument("--limit", type=int, default=50)
    ar = add("retry", cmd_alerts_retry, "re-queue a dead-lettered delivery", alerts)
    ar.add_argument("id", type=int, help="delivery id (from `storywatch alerts dead`)")
    ap = add("preview", cmd_alerts_preview, "render every notifier's message for a rule",
             alerts)
    ap.add_argument("rule", help="rule id")
    ap.add_argument("--fixture", help="YAML story fixture (title, event, sources)")
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
