"""Storing and clustering are separate stages: whatever happens between them, every
stored entry joins exactly one story, once, and its alerts follow.

Entries are stored as the daemon's store stage does (`Ingestor`), then the story
stage runs later: in a restarted daemon, or in a process killed with SIGKILL in
the middle of a batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from monitor.daemon import Daemon
from monitor.db import queries
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Alert, Entry, Story, StoryMember
from monitor.feeds import fetch
from monitor.feeds.parse import ParsedFeed, RawEntry
from monitor.feeds.schedule import Policy
from monitor.ingest import Ingestor
from monitor.offload import Offload
from monitor.rules.engine import RuleSet
from monitor.rules.live import RuleRunner
from monitor.stories.cluster import StoryIndex
from monitor.storystage import StoryStage
from tests.helpers import count, query, run_daemon, settings
from tests.servers import Reply, Server
from tests.story_fixtures import NEIGHBOURS, PARAPHRASES

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
ENERGY_RULE = "energy-strike-after-ceasefire"

KILLED_IN_A_BATCH = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
from monitor.db import queries
from monitor.db.engine import make_engine, session_factory
from monitor.rules.engine import RuleSet
from monitor.rules.live import RuleRunner
from monitor.stories.cluster import StoryIndex
from monitor.storystage import StoryStage

stage = StoryStage(session_factory(make_engine(sys.argv[1])), StoryIndex(timedelta(hours=72)),
                   RuleRunner(lambda: RuleSet(()), list, list), batch=2)
stage.rebuild(datetime.now(UTC))
stage.run_batch(datetime.now(UTC))
print("first batch committed", flush=True)
# The next batch writes its stories and members, then the process dies before COMMIT.
queries.last_member_id = lambda session: os.kill(os.getpid(), signal.SIGKILL)
stage.run_batch(datetime.now(UTC))
"""


def store(db: str, seeds: list[tuple[str, str]]) -> None:
    """Each seed report as one fetch of its own outlet, stored with no story stage running."""
    engine = make_engine(db)
    upgrade(engine)
    sessions = session_factory(engine)
    ingestor = Ingestor(sessions, Policy(900, 900, 86400, 300, 86400))
    for i, (title, body) in enumerate(seeds):
        with sessions.begin() as s:
            feed_id = queries.upsert_feed(s, f"http://127.0.0.1:9/seed{i}.xml", f"Outlet {i}",
                                          ["seed"], None, False, T0).id
        item = RawEntry(f"seed-{i}", f"https://outlet{i}.example/{i}", title, body, None,
                        published=T0 + timedelta(minutes=5 * i))
        ingestor.apply(feed_id, fetch.FetchResult(fetch.OK, status=200),
                       ParsedFeed(f"Outlet {i}", [item]), None, T0 + timedelta(minutes=6 * i))
    engine.dispose()


def assert_each_entry_in_one_story(db: str) -> None:
    members = query(db, select(StoryMember.entry_id, StoryMember.story_id))
    entries = query(db, select(Entry.id, Entry.story_id))
    assert sorted(e for e, _ in members) == sorted(e for e, _ in entries), "each entry once"
    assert dict(members) == dict(entries), "entries point at the story they joined"
    per_story = dict(query(db, select(StoryMember.story_id, func.count())
                           .group_by(StoryMember.story_id)))
    sources = dict(query(db, select(StoryMember.story_id,
                                    func.count(StoryMember.source.distinct()))
                         .group_by(StoryMember.story_id)))
    for story in query(db, select(Story.id, Story.entry_count, Story.source_count)):
        assert (story.entry_count, story.source_count) == (per_story[story.id],
                                                           sources[story.id])


def test_a_backlog_stored_earlier_is_clustered_once_after_a_restart(
        tmp_path: Path, receiver: Server, seeds: list[tuple[str, str]]) -> None:
    receiver.routes["/hook"] = Reply(200, b"ok")
    cfg = settings(tmp_path, receiver=receiver)
    db = cfg.resolved_database_url()
    store(db, seeds)
    assert count(db, Entry) == 5 and count(db, StoryMember) == 0

    daemon = Daemon(cfg)
    run_daemon(daemon, lambda: count(db, Entry, Entry.story_id.is_(None)) == 0
               and bool(receiver.hits("/hook")))
    assert_each_entry_in_one_story(db)
    assert [(s, e) for s, e in query(db, select(Story.source_count, Story.entry_count))] \
        == [(5, 5)]
    assert count(db, Alert, Alert.rule_id == ENERGY_RULE) == 1
    assert (daemon.stage.offload is not None) == ((os.cpu_count() or 1) > 1)
    assert daemon.stage.offload is None or daemon.stage.offload.pid is None, "closed at stop"
    _, detail = daemon.readiness()
    assert detail["story_backlog"] == 0 and detail["story_stage"] == "running"

    members = count(db, StoryMember)
    one_process = cfg.model_copy(update={"stories": cfg.stories.model_copy(
        update={"offload": False})})
    again = Daemon(one_process)  # a second start (in one process) finds nothing left to cluster
    assert again.stage.offload is None
    run_daemon(again, lambda: again.stage.ready and again._caught_up)
    assert count(db, StoryMember) == members
    assert_each_entry_in_one_story(db)


def test_sigkill_inside_a_story_batch_loses_and_duplicates_nothing(
        tmp_path: Path, seeds: list[tuple[str, str]]) -> None:
    cfg = settings(tmp_path)
    db = cfg.resolved_database_url()
    store(db, seeds)
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_A_BATCH, db], capture_output=True,
                            text=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr
    assert "first batch committed" in killed.stdout
    assert count(db, StoryMember) == 2, "the first batch stays, the killed one rolled back"
    assert count(db, Entry, Entry.story_id.is_(None)) == 3

    run_daemon(Daemon(cfg), lambda: count(db, Entry, Entry.story_id.is_(None)) == 0)
    assert_each_entry_in_one_story(db)
    assert [(s, e) for s, e in query(db, select(Story.source_count, Story.entry_count))] \
        == [(5, 5)], "the restart joins the rest to the story the first batch started"


def test_analysing_in_the_offload_process_changes_no_decision(tmp_path: Path) -> None:
    reports = [(title, text) for _, _, _, title, text in PARAPHRASES + NEIGHBOURS]
    decided = []
    for name, work in (("here", None), ("offloaded", Offload())):
        db = f"sqlite:///{tmp_path / name}.db"
        store(db, reports)
        stage = StoryStage(session_factory(make_engine(db)), StoryIndex(timedelta(hours=72)),
                           RuleRunner(lambda: RuleSet(()), list, list), batch=4, offload=work)
        stage.rebuild(datetime.now(UTC))
        while stage.run_batch(datetime.now(UTC)).entries:
            pass
        decided.append(query(db, select(StoryMember.entry_id, StoryMember.story_id,
                                        StoryMember.similarity, StoryMember.reason,
                                        StoryMember.detail).order_by(StoryMember.entry_id)))
        if work:
            assert work.pid is not None, "the offload process did the analysis"
            work.close()
    assert len(decided[0]) == len(reports)
    assert len({story for _, story, *_ in decided[0]}) < len(reports), "some reports joined"
    assert decided[0] == decided[1]
