"""A saved story index lets a restart skip the rebuild, and is never loaded when wrong.

Real SQLite files (and PostgreSQL for two instances): a stage restored from a
snapshot and caught up makes the same decisions, and the same alerts, as one
that never stopped; anything damaged, foreign or built differently is refused
and the daemon rebuilds from the database instead.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from monitor import metrics
from monitor.daemon import Daemon
from monitor.db import queries
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Alert, Entry, StoryMember
from monitor.feeds import fetch
from monitor.feeds.parse import ParsedFeed, RawEntry
from monitor.feeds.schedule import Policy
from monitor.ingest import Ingestor
from monitor.rules.engine import RuleSet
from monitor.rules.live import RuleRunner
from monitor.stories import cluster, snapshot
from monitor.stories.cluster import StoryIndex
from monitor.storystage import StoryStage
from tests.helpers import ROOT, query, run_daemon, settings

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = timedelta(hours=72)
OUTLETS = ("Harbour Post", "Inland Gazette", "Metro Wire", "Coast Times")
TOPICS = ("mine flooding at Dunmore pit", "tram strike in Velmar", "bridge closure on the Arne",
          "bank merger of Kessel and Ortho", "wildfire near Lasko", "vaccine trial in Brenna",
          "port dispute at Saltery docks", "election recount in Pell")

WRITE_KILLED_AT_FSYNC = """
import os, signal, sys, time
from dataclasses import replace
from pathlib import Path
from monitor.stories import snapshot
path = Path(sys.argv[1])
header, index = snapshot.read(path, lambda header: None)
def stuck(fd):
    print("written, not yet renamed", flush=True)
    time.sleep(60)
snapshot.os.fsync = stuck
snapshot.write(path, index, replace(header, member=header.member + 1000))
"""

PROBE_IN_ANOTHER_PROCESS = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from monitor.db.engine import make_engine, session_factory
from monitor.rules.engine import RuleSet
from monitor.rules.live import RuleRunner
from monitor.stories.cluster import Doc, StoryIndex
from monitor.storystage import StoryStage
stage = StoryStage(session_factory(make_engine(sys.argv[1])), StoryIndex(timedelta(hours=72)),
                   RuleRunner(lambda: RuleSet(()), list, list))
stage.restore(Path(sys.argv[2]), datetime.now(UTC))
doc = Doc(10**6, "Elsewhere", "Unrelated words entirely", "", datetime.now(UTC), sys.argv[3])
print(stage.index.assign(stage.index.features(doc)).reason)
"""


def reports(first: int, n: int) -> list[tuple[str, str, str]]:
    """(outlet, title, text): several outlets telling several events, some copied."""
    out = []
    for i in range(first, first + n):
        topic = TOPICS[i % len(TOPICS)]
        outlet = OUTLETS[(i // len(TOPICS)) % len(OUTLETS)]
        out.append((outlet, f"Update {i // len(TOPICS)} on the {topic}",
                    f"Officials spoke about the {topic} again on day {i // 16}. "
                    f"Residents of district {i % 5} reported delays and {i % 7} arrests; "
                    f"the {topic} remains the main story for {outlet}."))
    return out


class Db:
    """A real database with the production store stage in front of it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.sessions = session_factory(self.engine)
        self.ingestor = Ingestor(self.sessions, Policy(900, 900, 86400, 300, 86400))
        self.fetches = 0

    def store(self, items: list[tuple[str, str, str]]) -> None:
        for outlet, title, text in items:
            self.fetches += 1
            at = NOW - timedelta(hours=10) + timedelta(minutes=self.fetches)
            with self.sessions.begin() as s:
                feed_id = queries.upsert_feed(s, f"http://127.0.0.1:9/{outlet}.xml", outlet,
                                              [], None, False, at).id
            item = RawEntry(f"{outlet}-{self.fetches}", f"https://{outlet[0]}.example/"
                            f"{self.fetches}", title, text, None, published=at)
            self.ingestor.apply(feed_id, fetch.FetchResult(fetch.OK, status=200),
                                ParsedFeed(outlet, [item]), None, at)

    def stage(self) -> StoryStage:
        rules = RuleSet.load(ROOT / "rules")
        return StoryStage(self.sessions, StoryIndex(WINDOW),
                          RuleRunner(lambda: rules, list, list), batch=40)

    def decisions(self, after: int = 0) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in query(self.url, select(
            StoryMember.entry_id, StoryMember.story_id, StoryMember.reason,
            StoryMember.similarity).where(StoryMember.id > after).order_by(StoryMember.id))]

    def alerts(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in query(self.url, select(
            Alert.rule_id, Alert.story_id, Alert.state, Alert.seq, Alert.fingerprint)
            .order_by(Alert.id))]


def drain(stage: StoryStage) -> None:
    if not stage.ready:
        stage.rebuild(NOW)
    while stage.run_batch(NOW).entries:
        pass


def save(stage: StoryStage, path: Path) -> snapshot.Header:
    header = stage.snapshot_header(NOW)
    snapshot.write(path, stage.index, header)
    return header


def probe(index: StoryIndex, items: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
    """What the index would decide for new entries (deciding changes nothing)."""
    out = []
    for i, (outlet, title, text) in enumerate(items):
        d = cluster.Doc(10**6 + i, outlet, title, text, NOW, f"probe-{i}")
        a = index.assign(index.features(d))
        out.append((a.story_id, a.reason, a.similarity))
    return out


def test_a_restored_stage_decides_and_alerts_as_one_that_never_stopped(
        tmp_path: Path, seeds: list[tuple[str, str]]) -> None:
    db = Db(f"sqlite:///{tmp_path / 'live.db'}")
    live = db.stage()
    db.store(reports(0, 120))
    drain(live)
    path = tmp_path / snapshot.NAME
    header = save(live, path)
    db.store(reports(120, 60))
    drain(live)  # members after the snapshot: the restored stage must catch up on them
    db.store([(f"Outlet {i}", title, body) for i, (title, body) in enumerate(seeds)]
             + reports(180, 40))
    db.engine.dispose()
    shutil.copy(tmp_path / "live.db", tmp_path / "restarted.db")

    copy = Db(f"sqlite:///{tmp_path / 'restarted.db'}")
    restarted = copy.stage()
    assert restarted.restore(path, NOW) == 60, "replays exactly the members added since"
    assert restarted.seen_member == live.seen_member
    drain(live)
    drain(restarted)
    assert copy.decisions(header.member) == db.decisions(header.member)
    assert len(db.decisions(header.member)) == 60 + 5 + 40
    assert db.alerts() and copy.alerts() == db.alerts()


def test_another_instances_members_are_caught_up_on_postgresql(tmp_path: Path,
                                                                 pg_url: str) -> None:
    db = Db(pg_url)
    first, other = db.stage(), db.stage()
    db.store(reports(0, 80))
    drain(first)
    path = tmp_path / snapshot.NAME
    header = save(first, path)
    db.store(reports(80, 50))
    drain(other)  # the other instance clusters what the first never saw
    assert other.seen_member > header.member

    restarted = db.stage()
    assert restarted.restore(path, NOW) == 50
    assert restarted.seen_member == other.seen_member
    probes = reports(130, 24)
    assert probe(restarted.index, probes) == probe(other.index, probes)
    db.engine.dispose()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Db, Path]:
    db = Db(f"sqlite:///{tmp_path / 'storywatch.db'}")
    stage = db.stage()
    db.store(reports(0, 60))
    drain(stage)
    path = tmp_path / snapshot.NAME
    save(stage, path)
    return db, path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x40
    path.write_bytes(bytes(data))


def _lose_the_digest(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def _not_a_snapshot(path: Path) -> None:
    path.write_bytes(b"\x00" * 100)


def _code_that_would_run(path: Path) -> None:
    """A valid header and digest around a pickle that calls os.system."""
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("touch " + str(path.with_suffix(".pwned")),))

    _replace_index(path, Evil())


def _replace_index(path: Path, obj: object) -> None:
    """The same header, another pickle, a digest that matches."""
    head = path.read_bytes()[len(snapshot.MAGIC):].split(b"\n", 1)[0]
    blob = snapshot.MAGIC + head + b"\n" + pickle.dumps(obj, protocol=5)
    path.write_bytes(blob + hashlib.blake2b(blob, digest_size=snapshot.DIGEST).digest())


def _a_function_of_ours(path: Path) -> None:
    """Only classes of `monitor.stories` load, not its functions."""
    class Call:
        def __reduce__(self) -> tuple[Any, ...]:
            return (cluster.key_hash, ("x",))

    _replace_index(path, Call())


@pytest.mark.parametrize(("damage", "why"), [
    (_truncate, "damaged"), (_flip_a_byte, "damaged"), (_lose_the_digest, "digest differs"),
    (_not_a_snapshot, "not a story index snapshot"),
    (_code_that_would_run, "posix.system, which a story index never holds"),
    (_a_function_of_ours, "key_hash, which a story index never holds")])
def test_a_damaged_snapshot_is_refused(saved: tuple[Db, Path], damage: Any, why: str) -> None:
    db, path = saved
    damage(path)
    stage = db.stage()
    with pytest.raises(snapshot.Refused, match=why):
        stage.restore(path, NOW)
    assert not stage.ready
    assert not path.with_suffix(".pwned").exists(), "unpickling ran code"


def test_a_snapshot_of_another_database_or_history_is_refused(
        saved: tuple[Db, Path], tmp_path: Path) -> None:
    db, path = saved
    other = Db(f"sqlite:///{tmp_path / 'other.db'}")
    other.store(reports(0, 60))
    drain(other.stage())  # same entries, same stories: only the database id differs
    with pytest.raises(snapshot.Refused, match="another database"):
        other.stage().restore(path, NOW)

    with db.sessions.begin() as s:  # this database, but another history (a restored backup)
        s.execute(delete(StoryMember).where(StoryMember.id == queries.last_member_id(s)))
    with pytest.raises(snapshot.Refused, match="not in the database"):
        db.stage().restore(path, NOW)


def test_a_snapshot_built_with_other_settings_or_too_old_is_refused(
        saved: tuple[Db, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    db, path = saved
    for index, why in ((StoryIndex(timedelta(hours=24)), "window"),
                       (StoryIndex(WINDOW, 0.3), "threshold")):
        stage = db.stage()
        stage.index = index
        with pytest.raises(snapshot.Refused, match=why):
            stage.restore(path, NOW)
    with pytest.raises(snapshot.Refused, match="longer ago than the window"):
        db.stage().restore(path, NOW + WINDOW + timedelta(minutes=1))
    monkeypatch.setattr(cluster, "DOC_TERMS", cluster.DOC_TERMS + 1)
    with pytest.raises(snapshot.Refused, match="DOC_TERMS"):
        db.stage().restore(path, NOW)


def test_sigkill_while_saving_leaves_the_previous_snapshot(saved: tuple[Db, Path]) -> None:
    db, path = saved
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", WRITE_KILLED_AT_FSYNC, str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "written, not yet renamed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert list(path.parent.glob(f".{path.name}.*.tmp")), "the new file was being written"
    assert path.read_bytes() == before
    stage = db.stage()
    assert stage.restore(path, NOW) == 0 and stage.ready


def test_exact_keys_still_match_in_another_process(saved: tuple[Db, Path]) -> None:
    """String hashes differ between processes; the saved exact keys must not."""
    db, path = saved
    guid = query(db.url, select(Entry.guid).order_by(Entry.id).limit(1))[0][0]
    out = subprocess.run([sys.executable, "-c", PROBE_IN_ANOTHER_PROCESS, db.url, str(path),
                          guid], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == "exact_guid"


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_daemon_saves_at_stop_loads_at_start_and_rebuilds_when_refused(
        tmp_path: Path) -> None:
    cfg = settings(tmp_path)
    db = Db(cfg.resolved_database_url())
    db.store(reports(0, 50))
    path = tmp_path / snapshot.NAME

    def loads(result: str) -> float:
        return _sample("storywatch_story_snapshot_loads_total", result=result)

    first = Daemon(cfg)
    absent, saves = loads("absent"), _sample("storywatch_story_snapshot_saves_total",
                                             result="ok")
    run_daemon(first, lambda: first.stage.ready and first._caught_up)
    assert loads("absent") == absent + 1
    assert _sample("storywatch_story_snapshot_saves_total", result="ok") == saves + 1
    with path.open("rb") as f:
        assert snapshot.read_header(f).member == first.stage.seen_member == 50

    db.store(reports(50, 10))
    loaded = loads("loaded")
    second = Daemon(cfg)
    run_daemon(second, lambda: second.stage.ready and second._caught_up)
    assert loads("loaded") == loaded + 1
    assert second.stage.seen_member == 60
    with path.open("rb") as f:
        assert snapshot.read_header(f).member == 60, "saved again at stop: it changed"

    _truncate(path)
    refused = loads("refused")
    third = Daemon(cfg)
    run_daemon(third, lambda: third.stage.ready and third._caught_up)
    assert loads("refused") == refused + 1
    assert third.stage.index.docs_seen == 60, "rebuilt from the database"
    db.engine.dispose()
