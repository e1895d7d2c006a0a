"""`storywatch rules …` and `storywatch silences …`: the analyst's commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.config import Settings, parse_duration

Handler = Callable[[argparse.Namespace, Settings], int]
Adder = Callable[..., argparse.ArgumentParser]


def _errors(exc: Any) -> int:
    for err in exc.errors:
        print(err, file=sys.stderr)
    return 1


def cmd_lint(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.alerts.notify import setup_errors
    from monitor.rules.schema import RuleErrors
    from monitor.rules.tools import lint

    try:
        bundle = lint(settings)
    except RuleErrors as exc:
        return _errors(exc)
    broken = setup_errors(dict(settings.notifiers))
    for error in broken:
        print(error, file=sys.stderr)
    if broken:
        return 1
    tests = sum(len(lr.rule.tests) for lr in bundle.rules)
    print(f"ok: {len(settings.feeds)} feeds, {len(bundle.rules)} rules ({tests} inline tests), "
          f"{len(settings.notifiers)} notifiers")
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.rules.schema import rule_json_schema

    text = json.dumps(rule_json_schema(), indent=2, sort_keys=True)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.rules.schema import RuleErrors
    from monitor.rules.tools import lint, run_tests

    try:
        results = run_tests(lint(settings), args.rule)
    except RuleErrors as exc:
        return _errors(exc)
    for r in results:
        print(f"{'PASS' if r.ok else 'FAIL'} {r.rule_id}: {r.name}")
        for failure in r.failures:
            print(f"     {failure}")
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


def _when(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Replay stored history or feed files; print the alerts that would have fired."""
    from monitor.rules.engine import RuleSet
    from monitor.rules.schema import RuleErrors
    from monitor.rules.tools import HistoryEntry, backtest, feed_file_entries, lint

    start = _when(args.since) if args.since else datetime(1970, 1, 1, tzinfo=UTC)
    end = _when(args.until) if args.until else datetime.now(UTC)
    try:
        rules = RuleSet.from_bundle(lint(settings))
        if args.feeds:
            entries = [e for e in feed_file_entries(Path(p) for p in args.feeds)
                       if start <= e.at <= end]
        else:
            from monitor.cli import _session
            from monitor.db import queries

            with _session(settings) as session:
                entries = [HistoryEntry(e.id, name, e.title, e.content or e.summary or "",
                                        e.event_at, tuple(str(t) for t in tags), e.url,
                                        e.guid, e.canonical_url, e.content_hash)
                           for e, name, tags in queries.history(session, start, end)]
    except RuleErrors as exc:
        return _errors(exc)
    run = backtest(rules, entries, timedelta(seconds=settings.stories.window), end)
    for c in run.book.changes:
        group = ", ".join(f"{k}={v}" for k, v in c["group"].items())
        items = f"  {c['items']} alert(s)" if c["change"] == "digest" else ""
        print(f"{c['at'].isoformat()}  {c['change'].upper():8} {c['rule']}"
              f"{f' [{group}]' if group else ''}{items}  stories {c['stories']}  "
              f"sources {', '.join(c['sources'])}")
    for s in run.book.suppressed:
        print(f"{s['at'].isoformat()}  SUPPRESSED {s['rule']}: {s['reason']}")
    for rule_id, _, state in run.book.open_digests():
        print(f"{state['end']}  OPEN DIGEST {rule_id}: {len(state['items'])} alert(s) "
              f"still collecting, due at the end of the period")
    print(f"{len(entries)} entries replayed: {len(run.book.changes)} alert changes, "
          f"{len(run.book.suppressed)} suppressed")
    return 0


def _matchers(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"storywatch: matcher {pair!r} is not label=value")
        out[key.strip()] = value.strip()
    return out


def cmd_silence_add(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.cli import _session
    from monitor.db import queries

    now = datetime.now(UTC)
    start = _when(args.start) if args.start else now
    end = start + timedelta(seconds=parse_duration(args.duration))
    with _session(settings) as session, session.begin():
        silence = queries.add_silence(session, _matchers(args.matcher), start, end,
                                      args.author, args.comment, now)
        print(f"silence {silence.id} until {end.isoformat()}")
    return 0


def cmd_silence_list(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.cli import _session, _table
    from monitor.db import queries

    with _session(settings) as session:
        rows = queries.list_silences(session, args.all, datetime.now(UTC))
        _table([(s.id, ",".join(f"{k}={v}" for k, v in s.matchers.items()),
                 s.starts_at.isoformat(timespec="minutes"),
                 s.ends_at.isoformat(timespec="minutes"), s.author, s.comment[:50])
                for s in rows], ("ID", "MATCHERS", "STARTS", "ENDS", "AUTHOR", "COMMENT"))
    return 0


def cmd_silence_expire(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.cli import _session
    from monitor.db import queries

    with _session(settings) as session, session.begin():
        if not queries.expire_silence(session, args.id, datetime.now(UTC)):
            print(f"storywatch: no active silence {args.id}", file=sys.stderr)
            return 1
    print(f"silence {args.id} expired")
    return 0


def cmd_suppressions(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.cli import _session, _table
    from monitor.db import queries

    with _session(settings) as session:
        _table([(s.id, s.created_at.isoformat(timespec="seconds"), s.rule_id, s.reason,
                 s.group_key[:40]) for s in queries.list_suppressions(session, args.limit)],
               ("ID", "AT", "RULE", "REASON", "GROUP"))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Adder) -> None:
    rules = sub.add_parser("rules", help="rules: lint, test, backtest, schema")
    rsub = rules.add_subparsers(dest="rules", required=True)
    add("lint", cmd_lint, "check rule files, references and templates", rsub)
    sc = add("schema", cmd_schema, "print the JSON Schema of rule files (for editors)", rsub)
    sc.add_argument("--output", help="write to this file instead of stdout")
    te = add("test", cmd_test, "run the inline tests of rule files", rsub)
    te.add_argument("--rule", help="only this rule id")
    bt = add("backtest", cmd_backtest, "replay history and print the alerts it would raise",
             rsub)
    bt.add_argument("--from", dest="since", help="ISO 8601 start (default: everything)")
    bt.add_argument("--to", dest="until", help="ISO 8601 end (default: now)")
    bt.add_argument("--feeds", nargs="+", help="feed files to replay instead of the database")
    su = add("suppressions", cmd_suppressions, "list suppressed matches and why", rsub)
    su.add_argument("--limit", type=int, default=50)
    silences = sub.add_parser("silences", help="mute alerts by label matchers")
    ssub = silences.add_subparsers(dest="silences", required=True)
    sa = add("add", cmd_silence_add, "add a silence", ssub)
    sa.add_argument("matcher", nargs="+", help="label=value (value: x, !x, ~regex, !~regex)")
    sa.add_argument("--duration", default="2h", help="how long (default 2h)")
    sa.add_argument("--start", help="ISO 8601 start (default: now)")
    sa.add_argument("--author", required=True)
    sa.add_argument("--comment", required=True)
    sl = add("list", cmd_silence_list, "list silences", ssub)
    sl.add_argument("--all", action="store_true", help="include expired silences")
    se = add("expire", cmd_silence_expire, "end a silence now", ssub)
    se.add_argument("id", type=int)
