"""The daemon: wiring of scheduler, fetchers, ingest, delivery, web endpoint and signals.

APScheduler drives three ticks (dispatch due feeds, deliver the outbox,
housekeeping); per-feed schedules live in the database. SIGTERM stops
cleanly: claimed feeds finish or their leases are released for the next
start. SIGHUP reloads rules and keeps the old ones if the new are invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import __version__, metrics, retention
from monitor.alerts.deliver import Deliverer
from monitor.alerts.notify import NotifierUnavailable, build_notifiers
from monitor.alerts.render import RenderError
from monitor.config import Route, Settings
from monitor.db import queries
from monitor.db.engine import (
    InstanceLocked,
    is_current,
    lock_sqlite,
    make_engine,
    session_factory,
    upgrade,
)
from monitor.db.queries import Claim
from monitor.feeds import fetch
from monitor.feeds.clients import SlotClients
from monitor.feeds.guard import AddressGuard
from monitor.feeds.hosts import HostGate
from monitor.feeds.parse import FeedParseError
from monitor.feeds.schedule import Policy
from monitor.feeds.worker import Parsed, ParsePool
from monitor.ingest import Ingestor, IngestReport, Poll
from monitor.offload import Offload
from monitor.rules.engine import RuleSet
from monitor.rules.live import RuleRunner
from monitor.rules.schema import RuleErrors
from monitor.sdnotify import Notifier as SdNotifier
from monitor.stories import snapshot
from monitor.stories.cluster import StoryIndex
from monitor.storystage import StageReport, StoryStage
from monitor.watchdog import Watchdog
from monitor.web import WebServer

log = logging.getLogger(__name__)

STOP_GRACE = 20.0
EXPIRE_EVERY = 15.0
"""Seconds between forgetting story state older than the window."""
REFILL = 8
"""A backlog is claimed again once 1/REFILL of the poll slots are free."""
STORY_YIELD = 3.0
"""While polls are in flight the story stage pauses this many times as long as its last
batch took, leaving most of the process (one interpreter lock) to fetching and storing."""
SAVE_NICENESS = 10
"""Priority of a periodic story index save below the daemon's (polls come first); the
save at a stop, with nothing left to poll, runs at the daemon's own priority."""
STORY_POLL = 1.0
"""Seconds between backlog checks when no store woke the story stage (other instances'
entries, retries after an error)."""

ReportHook = Callable[[StageReport], None]


class StartupError(Exception):
    """The daemon cannot start (bad database, rules, or address); the message says why."""


class Daemon:
    def __init__(self, settings: Settings, on_report: ReportHook | None = None) -> None:
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.on_report = on_report
        self.engine = make_engine(settings.resolved_database_url())
        self.sessions = session_factory(self.engine)
        self.rules = RuleSet(())
        self.sd = SdNotifier()
        self._stop = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # SQLite has one writer at a time and makes the others busy-wait, so this process
        # queues its writers itself. PostgreSQL needs no such queue, and a second lock
        # beside INGEST_LOCK could only deadlock with it.
        self._writer: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext())
        self._last_tick = time.monotonic()
        self._ready = False
        self._counts: dict[str, int] = {}
        self._rules_signature: tuple[tuple[str, int, int], ...] = ()
        self._lock: IO[str] | None = None
        p = settings.polling
        self.policy = Policy(p.default_interval, p.min_interval, p.max_interval,
                             p.retry_failed_after, p.max_backoff, p.suspend_after_failures,
                             p.suspend_after, p.suspended_retry)
        self.limits = fetch.Limits(p.max_body_bytes, p.max_download_bytes or p.max_body_bytes,
                                   p.timeout, p.max_redirects)
        self.guard = AddressGuard(p.allowed_networks)
        self.hosts = HostGate(p.host_concurrency, p.host_spacing)
        self.parsers = ParsePool(p.parse_workers or os.cpu_count() or 1, p.parse_timeout)
        self._restarts_seen = 0
        self._dispatching = self._again = self._backlog = False
        self._kicks: set[asyncio.Future[None]] = set()
        self._jobs: set[asyncio.Task[Any]] = set()
        """Scheduler jobs running now (see `_tracked`)."""
        self._pending: list[tuple[Poll, asyncio.Future[IngestReport]]] = []
        self._flushing = asyncio.Lock()
        index = StoryIndex(timedelta(seconds=settings.stories.window), settings.stories.threshold)
        self.runner = RuleRunner(self._rules, self._notifier_names, self._routes)
        self.ingestor = Ingestor(self.sessions, self.policy)
        offload = settings.stories.offload
        if offload is None:
            offload = (os.cpu_count() or 1) > 1
        self.stage = StoryStage(self.sessions, index, self.runner,
                                offload=Offload() if offload else None)
        self._story_wake = asyncio.Event()
        self._polls_done = asyncio.Event()
        self._story_deadline = float("inf")
        self._story_backlog = 0
        self._story_error: str | None = None
        self._caught_up = False
        self._next_expiry = 0.0
        self._next_save = time.monotonic() + settings.stories.snapshot_interval
        self._saved_member = -1
        """The newest member in the last snapshot saved (or loaded): nothing new, no save."""
        self._saving: tuple[int, asyncio.Task[None]] | None = None
        """The child process writing a snapshot, and the task waiting for it."""

    def _rules(self) -> RuleSet:
        return self.rules

    def _notifier_names(self) -> list[str]:
        return list(self.settings.notifiers)

    def _routes(self) -> list[Route]:
        return list(self.settings.routes)

    # -- start-up ----------------------------------------------------------------
    def prepare(self) -> None:
        """Migrate, sync feeds from the config, load rules (the story stage rebuilds later)."""
        try:
            self._lock = lock_sqlite(self.engine)
        except InstanceLocked as exc:
            raise StartupError(str(exc)) from exc
        if self.settings.migrate_on_start:
            upgrade(self.engine)
        elif not is_current(self.engine):
            raise StartupError("database is not at the newest migration: "
                               "run `storywatch db upgrade`")
        self.load_rules()
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            queries.serialise(session, queries.SETUP_LOCK)
            for f in self.settings.feeds:
                queries.upsert_feed(session, f.url, f.name or f.url, list(f.tags), f.interval,
                                    f.enabled, now)

    def load_rules(self) -> None:
        directory = self.settings.resolved_rules_dir()
        self._rules_signature = rules_signature(directory)
        try:
            rules = RuleSet.load(directory)
        except RuleErrors as exc:
            metrics.CONFIG_ERRORS.inc(len(exc.errors))
            raise StartupError(str(exc)) from exc
        self.rules = rules
        metrics.RULES_LOADED.set(len(rules))
        for compiled in rules.rules:
            metrics.RULE_MATCHES_BY_RULE.labels(metrics.rule_label(compiled.rule.id, len(rules)))

    def reload(self) -> None:
        """SIGHUP: swap in the new rules atomically, or keep the old on any error."""
        self.sd.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            self.load_rules()
        except StartupError as exc:
            metrics.RULE_RELOADS.labels("error").inc()
            log.error("rule reload failed; keeping the previous rules",
                      extra={"errors": str(exc)})
        else:
            metrics.RULE_RELOADS.labels("ok").inc()
            log.info("rules reloaded", extra={"rules": len(self.rules)})
        self.sd.send("READY=1", self._status_line())

    # -- ticks -------------------------------------------------------------------
    async def dispatch(self) -> None:
        """Claim due feeds up to the concurrency limits and start polling them.

        Runs on the scheduler tick and again whenever a poll frees a slot while
        the last claim came back full, so a backlog drains at full speed.
        """
        self._last_tick = time.monotonic()
        metrics.SCHEDULER_LAST_TICK.set(time.time())
        _test_freeze_hook()
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again and not self._stop.is_set():
                self._again = False
                await self._dispatch_once()
        finally:
            self._dispatching = False

    async def _dispatch_once(self) -> None:
        free = self.settings.polling.concurrency - len(self._inflight)
        if free <= 0:
            return
        now = datetime.now(UTC)
        try:
            async with self._writer:
                claimed, lag = await asyncio.to_thread(self._claim, now, free)
        except Exception:
            metrics.DB_ERRORS.labels("claim").inc()
            log.exception("claiming due feeds failed")
            return
        metrics.SCHEDULE_LAG.set(lag)
        self._backlog = lag > 0 or len(claimed) == free
        for job in claimed:
            metrics.POLL_DELAY.observe(max(0.0, (now - job.due).total_seconds()))
            self.hosts.reserve(job.host)
            slot = self.pools.acquire()
            task = asyncio.create_task(self._poll(job, self.pools.client(slot)))
            self._inflight[job.feed_id] = task
            task.add_done_callback(functools.partial(self._done, job, slot))

    def _done(self, job: Claim, slot: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(job.feed_id, None)
        self.hosts.release(job.host)
        self.pools.release(slot)
        # Refill in batches: one claim per freed slot would cost a transaction per poll.
        free = self.settings.polling.concurrency - len(self._inflight)
        if self._backlog and not self._stop.is_set() and (
                free >= self.settings.polling.concurrency // REFILL or not self._inflight):
            kick = asyncio.ensure_future(self.dispatch())
            self._kicks.add(kick)
            kick.add_done_callback(self._kicks.discard)

    def _claim(self, now: datetime, limit: int) -> tuple[list[Claim], float]:
        """Lease due feeds (per-host room permitting); also how overdue the backlog is."""
        with self.sessions.begin() as session:
            queries.serialise(session, queries.CLAIM_LOCK)
            leased = queries.leases_by_host(session, now)  # every instance's fetches

            def room(host: str) -> int:
                return min(self.hosts.room(host),
                           self.settings.polling.host_concurrency - leased.get(host, 0))

            jobs, oldest = queries.claim_due_feeds(
                session, self.owner, now, limit, timedelta(seconds=self.settings.polling.lease),
                room)
        due = [j.due for j in jobs] + ([oldest] if oldest else [])
        return jobs, max((max(0.0, (now - d).total_seconds()) for d in due), default=0.0)

    async def _poll(self, job: Claim, client: httpx.AsyncClient) -> None:
        await self.hosts.wait_turn(job.host)
        result = await fetch.fetch(client, fetch.FetchRequest(job.url, job.etag,
                                                                   job.last_modified),
                                   self.limits, self.guard)
        parsed: Parsed | None = None
        parse_error: str | None = None
        body = result.body
        if result.outcome == fetch.OK and body is not None:
            metrics.FETCH_BYTES.observe(len(body))
            if result.body_hash == job.body_hash:
                # Same bytes as last time without a 304: nothing to parse.
                result = replace(result, outcome=fetch.NOT_MODIFIED, body=None)
            else:
                try:
                    parsed = await self.parsers.parse(body, result.content_type)
                except FeedParseError as exc:
                    if self._stop.is_set():
                        # A stop signal reaches the parser processes too (systemd signals
                        # the whole unit): not the feed's failure. Its lease is released,
                        # so it is polled first after the restart.
                        return
                    parse_error = str(exc)
                metrics.PARSER_RESTARTS.inc(self.parsers.replaced - self._restarts_seen)
                self._restarts_seen = self.parsers.replaced
        outcome = fetch.PARSE_ERROR if parse_error else result.outcome
        metrics.FETCHES.labels(outcome).inc()
        metrics.FETCH_DURATION.observe(result.duration)
        if outcome != result.outcome or result.failed:
            log.warning("feed fetch failed", extra={"feed_id": job.feed_id, "outcome": outcome,
                                                    "error": parse_error or result.error})
        try:
            report = await self._store(
                Poll(job.feed_id, result, parse_error=parse_error) if parsed is None else
                Poll(job.feed_id, result, parsed.feed, parse_error, parsed.items))
        except Exception:
            log.exception("storing a fetch failed; will retry the feed",
                          extra={"feed_id": job.feed_id})
            await asyncio.to_thread(self._defer_quietly, job.feed_id)
            return
        if not result.failed and not parse_error:
            metrics.LAST_SUCCESSFUL_POLL.set(time.time())
        for kind, n in (("new", report.new), ("updated", report.updated),
                        ("duplicate", report.duplicate)):
            if n:
                metrics.ENTRIES.labels(kind).inc(n)
        if report.new:
            self._set_backlog(self._story_backlog + report.new)
            self._story_wake.set()

    async def _store(self, poll: Poll) -> IngestReport:
        """Group commit: polls finishing while the writer is busy share one transaction."""
        done: asyncio.Future[IngestReport] = asyncio.get_running_loop().create_future()
        self._pending.append((poll, done))
        if len(self._pending) == 1:
            flush = asyncio.ensure_future(self._flush())
            self._kicks.add(flush)
            flush.add_done_callback(self._kicks.discard)
        return await done

    async def _flush(self) -> None:
        async with self._flushing, self._writer:  # one group at a time; the next one grows
            batch, self._pending = self._pending, []
            try:
                results = await asyncio.to_thread(self.ingestor.store, [p for p, _ in batch],
                                                  datetime.now(UTC))
            except Exception as exc:  # each poll logs it and defers its feed
                results = [exc] * len(batch)
            for (_, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue
                if isinstance(result, Exception):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    # -- the story stage ---------------------------------------------------------
    async def _run_stories(self) -> None:
        """Rebuild the story index, then cluster the backlog whenever stores add to it.

        Runs beside polling from the first second: polls store their entries
        while the index is still being rebuilt, and the stage catches up after.
        On a stop it drains what the last polls stored, within the grace period.
        """
        while True:
            if not self.stage.ready and not await self._rebuild_stories():
                return
            try:
                drained = await self._drain_stories()
            except Exception as exc:
                metrics.DB_ERRORS.labels("stories").inc()
                metrics.STORY_INDEX_READY.set(0)
                self._story_error = type(exc).__name__
                log.exception("clustering a batch failed; rebuilding the story index")
                drained = False
            if self._polls_done.is_set() and (drained or time.monotonic() > self._story_deadline):
                return
            if drained and time.monotonic() >= self._next_save:
                await self._save_index()
            if drained or self._story_error:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._story_wake.wait(), STORY_POLL)
            self._story_wake.clear()

    async def _rebuild_stories(self) -> bool:
        """Load the index (snapshot, else database); False when the daemon stopped meanwhile."""
        started = time.monotonic()
        while not self._polls_done.is_set():
            try:
                source, n = await asyncio.to_thread(self._load_index, datetime.now(UTC))
                backlog = await asyncio.to_thread(self.stage.backlog)
            except Exception:
                metrics.DB_ERRORS.labels("stories").inc()
                log.exception("rebuilding the story index failed; retrying")
                await asyncio.sleep(STORY_POLL)
                continue
            if n is None:
                return False
            if source == "database":  # save soon: the next start need not rebuild again
                self._next_save = 0.0
            self._set_backlog(backlog)
            metrics.STORY_INDEX_READY.set(1)
            log.info("story index rebuilt", extra={
                "from": source, "entries": n, "open_stories": self.stage.index.open_stories,
                "seconds": round(time.monotonic() - started, 2), "backlog": backlog})
            return True
        return False

    def _snapshot_path(self) -> Path | None:
        return (self.settings.resolved_state_dir() / snapshot.NAME
                if self.settings.stories.snapshot else None)

    def _load_index(self, now: datetime) -> tuple[str, int | None]:
        """(In a thread) the saved index and what changed since, else a full rebuild.

        Returns where the index came from and the entries replayed (None: stopped).
        """
        path = self._snapshot_path()
        if path is not None:
            try:
                n = self.stage.restore(path, now, self._rebuild_pace)
            except FileNotFoundError:
                metrics.SNAPSHOT_LOADS.labels("absent").inc()
            except Exception as exc:  # whatever is wrong with the file, the database is right
                metrics.SNAPSHOT_LOADS.labels("refused").inc()
                log.warning("story index snapshot not used; rebuilding from the database",
                            extra={"path": str(path), "reason": str(exc) or type(exc).__name__})
            else:
                metrics.SNAPSHOT_LOADS.labels("loaded").inc()
                self._saved_member = self.stage.seen_member if n == 0 else -1
                return "snapshot", n
        return "database", self.stage.rebuild(now, self._rebuild_pace)

    async def _save_index(self, niceness: int = SAVE_NICENESS) -> None:
        """Start saving the index in a forked child, if it changed since the last save.

        Call only between batches (from the story task), so the child copies an
        index that matches the database up to `seen_member`.
        """
        path = self._snapshot_path()
        self._next_save = time.monotonic() + self.settings.stories.snapshot_interval
        member = self.stage.seen_member
        if (path is None or self._saving or not self.stage.ready
                or member == self._saved_member):
            return
        try:
            header = await asyncio.to_thread(self.stage.snapshot_header, datetime.now(UTC))
        except Exception:
            metrics.DB_ERRORS.labels("stories").inc()
            log.exception("could not save the story index")
            return
        started = time.perf_counter()
        try:
            pid, pipe = snapshot.fork_write(path, self.stage.index, header, niceness)
        except OSError:
            metrics.SNAPSHOT_SAVES.labels("error").inc()
            log.exception("could not start saving the story index")
            return
        paused = time.perf_counter() - started
        metrics.SNAPSHOT_PAUSE.observe(paused)
        self._saving = pid, asyncio.create_task(self._saved(pid, pipe, member, started, paused))

    async def _saved(self, pid: int, pipe: int, member: int, started: float,
                     paused: float) -> None:
        """Wait for a saving child and report how it went."""
        try:
            ok, detail = await asyncio.to_thread(snapshot.child_result, pid, pipe)
        finally:
            self._saving = None
        if not ok:
            metrics.SNAPSHOT_SAVES.labels("error").inc()
            log.warning("saving the story index failed; the previous snapshot stays",
                        extra={"error": detail})
            return
        self._saved_member = member
        metrics.SNAPSHOT_SAVES.labels("ok").inc()
        metrics.SNAPSHOT_BYTES.set(int(detail))
        log.info("story index saved", extra={
            "member": member, "bytes": int(detail), "paused_ms": round(paused * 1000, 1),
            "seconds": round(time.perf_counter() - started, 2)})

    async def _save_at_stop(self) -> None:
        """Save once more after the last batch, within what is left of the stop grace."""
        await self._finish_save()
        await self._save_index(niceness=0)
        await self._finish_save()

    async def _finish_save(self) -> None:
        """Wait for a running save until the grace period ends; then the child is killed."""
        if self._saving is None:
            return
        pid, task = self._saving
        left = max(1.0, self._story_deadline - time.monotonic())
        try:
            await asyncio.wait_for(asyncio.shield(task), left)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await task

    def _rebuild_pace(self, seconds: float) -> bool:
        """Between chunks of a rebuild (in its thread): yield to polls; False to stop."""
        if self._inflight and not self._stop.is_set():
            time.sleep(seconds * STORY_YIELD)
        return not self._stop.is_set()

    async def _drain_stories(self) -> bool:
        """Cluster batches until none is left; True when the backlog is empty."""
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + EXPIRE_EVERY
            self.stage.index.expire(datetime.now(UTC))
            metrics.OPEN_STORIES.set(self.stage.index.open_stories)
        if not await asyncio.to_thread(self.stage.has_backlog):
            self._set_backlog(0)
            self._announce_caught_up(0, 0.0)
            return True
        started, total = time.monotonic(), 0
        while True:
            if self._polls_done.is_set() and time.monotonic() > self._story_deadline:
                return False
            batch_started = time.monotonic()
            batch = await asyncio.to_thread(self.stage.cluster, datetime.now(UTC))
            if batch is None:
                break
            async with self._writer:
                report = await asyncio.to_thread(self.stage.commit, batch)
            if self._inflight:  # polls come first; the backlog waits, nothing is lost
                await asyncio.sleep((time.monotonic() - batch_started) * STORY_YIELD)
            self._story_error = None
            total += report.entries
            self._set_backlog(self._story_backlog - report.entries)
            if self.on_report:
                self.on_report(report)
            if report.entries < self.stage.batch:
                break
        self._announce_caught_up(total, time.monotonic() - started)
        return True

    def _announce_caught_up(self, entries: int, seconds: float) -> None:
        """The readiness line of the story stage: first after start, then after real backlogs."""
        if self._caught_up and entries <= self.stage.batch:
            return
        self._caught_up = True
        log.info("story stage caught up", extra={"entries": entries,
                                                 "seconds": round(seconds, 2)})

    def _set_backlog(self, n: int) -> None:
        self._story_backlog = max(0, n)
        metrics.STORY_BACKLOG.set(self._story_backlog)

    def _defer_quietly(self, feed_id: int) -> None:
        try:
            self.ingestor.defer(feed_id, datetime.now(UTC),
                                self.settings.polling.retry_failed_after)
        except Exception:
            metrics.DB_ERRORS.labels("ingest").inc()
            log.exception("could not defer feed", extra={"feed_id": feed_id})

    async def deliver(self) -> None:
        self._last_tick = time.monotonic()
        try:
            while await self.deliverer.run_once() and not self._stop.is_set():
                pass
        except Exception:
            metrics.DB_ERRORS.labels("deliver").inc()
            log.exception("delivery tick failed")

    async def alert_upkeep(self) -> None:
        """Close absence windows, resolve quiet alerts, re-send firing ones where needed."""
        try:
            if self._rules_changed():
                self.reload()
            async with self._writer:
                await asyncio.to_thread(self._rules_tick, datetime.now(UTC))
            await self.deliverer.resend_firing()
        except Exception:
            metrics.DB_ERRORS.labels("deliver").inc()
            log.exception("alert upkeep failed")

    def _rules_tick(self, now: datetime) -> None:
        with self.sessions.begin() as session:
            queries.serialise(session, queries.INGEST_LOCK)  # rule state: one writer
            self.runner.tick(session, now)

    def _rules_changed(self) -> bool:
        """Hot reload: the rules directory's files changed since the last load."""
        return rules_signature(self.settings.resolved_rules_dir()) != self._rules_signature

    async def housekeeping(self) -> None:
        """Expire old story state and refresh gauges that come from the database."""
        now = datetime.now(UTC)
        try:
            await asyncio.to_thread(self._refresh_gauges, now)
        except Exception:
            metrics.DB_ERRORS.labels("housekeeping").inc()
            log.exception("housekeeping failed")
        self.sd.send(self._status_line())

    async def upkeep(self) -> None:
        """Retention, then VACUUM/ANALYZE, in a worker thread."""
        try:
            await asyncio.to_thread(retention.upkeep, self.engine, self.sessions,
                                    self.settings.retention,
                                    timedelta(seconds=self.settings.stories.window),
                                    datetime.now(UTC), self.runner)
        except Exception:
            metrics.DB_ERRORS.labels("upkeep").inc()
            log.exception("upkeep failed; retrying at the next interval")

    def _refresh_gauges(self, now: datetime) -> None:
        with self.sessions() as session:
            states = queries.feeds_by_state(session)
            metrics.HOSTS_HELD.set(queries.held_hosts(session, now))
            pending, age, dead = queries.outbox_stats(session, now)
            self._counts = queries.counts(session)
            alerts = queries.alerts_by_state(session)
            metrics.DB_SIZE.set(queries.database_size_bytes(session))
            last_ok = queries.last_successful_poll(session)
            self._set_backlog(queries.backlog(session))
        for state in metrics.FEED_STATES:
            metrics.FEEDS.labels(state).set(states.get(state, 0))
        for state in metrics.ALERT_STATES:
            metrics.ALERTS.labels(state).set(alerts.get(state, 0))
        if last_ok is not None:  # the database remembers across restarts
            metrics.LAST_SUCCESSFUL_POLL.set(last_ok.timestamp())
        metrics.OUTBOX_PENDING.set(pending)
        metrics.OUTBOX_OLDEST_AGE.set(age)
        metrics.DEAD_LETTERS.set(dead)

    def _status_line(self) -> str:
        c = self._counts
        return (f"STATUS={c.get('feeds', 0)} feeds, {c.get('stories', 0)} stories, "
                f"{c.get('pending_deliveries', 0)} pending alerts, {len(self.rules)} rules")

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {"rules": len(self.rules), "version": __version__}
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            detail["database"] = "ok"
        except Exception as exc:
            detail["database"] = f"error: {type(exc).__name__}"
            return False, detail
        lag = time.monotonic() - self._last_tick
        detail["scheduler_last_tick_seconds_ago"] = round(lag, 1)
        ticking = lag < self._stall_limit()
        detail["story_stage"] = (f"error: {self._story_error}" if self._story_error else
                                 "running" if self.stage.ready else "rebuilding")
        detail["story_backlog"] = self._story_backlog
        return self._ready and ticking and self._story_error is None, detail

    def _stall_limit(self) -> float:
        """Seconds without a dispatch tick after which the scheduler counts as stuck."""
        half = self.sd.watchdog_interval()
        return max(2 * half if half else 30.0, 10 * self.settings.polling.dispatch_interval)

    def _ping_db(self) -> None:
        with self.sessions() as session:
            queries.ping(session)

    def _start_watchdog(self) -> asyncio.Task[None] | None:
        interval = self.sd.watchdog_interval()
        if interval is None:
            return None
        dog = Watchdog(self.sd, interval, lambda: self._last_tick, self._stall_limit(),
                       self._ping_db)
        return asyncio.create_task(dog.run(self._stop))

    # -- main loop ---------------------------------------------------------------
    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Run until `stop()` or SIGTERM/SIGINT."""
        metrics.init_labels(list(self.settings.notifiers))
        try:
            await asyncio.to_thread(self.prepare)
        except StartupError as exc:
            self.sd.send(f"STATUS=cannot start: {str(exc).splitlines()[0]}")
            raise
        p = self.settings.polling
        user_agent = p.user_agent.format(version=__version__, contact=p.contact)
        await self.parsers.start()
        client_args: dict[str, Any] = {  # one TLS context: building one costs ~50 ms
            "verify": httpx.create_ssl_context(), "headers": {"User-Agent": user_agent},
            "follow_redirects": True,
            "max_redirects": 5, "timeout": httpx.Timeout(p.timeout, connect=10.0)}
        self.pools = SlotClients(p.concurrency, **client_args)
        self.client = httpx.AsyncClient(**client_args)  # notifiers
        try:
            notifiers = build_notifiers(self.settings.notifiers, self.client)
        except (RenderError, NotifierUnavailable) as exc:
            await self.client.aclose()
            await self.pools.aclose()
            raise StartupError(str(exc)) from exc
        self.deliverer = Deliverer(self.sessions, notifiers, self.settings.delivery, self.owner,
                                   self.settings.notifiers)
        web = await self._start_web()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        p, d = self.settings.polling, self.settings.delivery
        now = datetime.now(UTC)
        r = self.settings.retention
        # Two instances per job: the second returns at once (see `_tracked`); dispatch
        # asks the running one to go round again instead.
        for job, seconds, first in ((self._tracked(self.dispatch, overlaps=True),
                                     p.dispatch_interval, now),
                                    (self._tracked(self.deliver), d.interval, now),
                                    (self._tracked(self.alert_upkeep), d.interval, now),
                                    (self._tracked(self.housekeeping), 15, now),
                                    (self._tracked(self.upkeep), r.interval,
                                     now + timedelta(seconds=min(60, r.interval)))):
            scheduler.add_job(job, "interval", seconds=seconds, max_instances=2, coalesce=True,
                              next_run_time=first)
        scheduler.start()
        stories = asyncio.create_task(self._run_stories())
        await asyncio.to_thread(self._refresh_gauges, datetime.now(UTC))
        self._ready = True
        self.sd.send("READY=1", self._status_line())
        watchdog = self._start_watchdog()
        log.info("storywatch running", extra={
            "version": __version__, "feeds": self._counts.get("feeds", 0), "rules": len(self.rules),
            "metrics": f"{web.host}:{web.port}" if web else "off"})
        if ready:
            ready()
        try:
            await self._stop.wait()
        finally:
            self.sd.send("STOPPING=1")
            log.info("stopping", extra={"inflight": len(self._inflight)})
            scheduler.pause()
            grace_ends = time.monotonic() + STOP_GRACE  # for ticks and polls alike
            if self._jobs:  # let running ticks finish their transaction, not cancel them
                await asyncio.wait(list(self._jobs), timeout=STOP_GRACE)
            scheduler.shutdown(wait=False)
            if watchdog:
                await watchdog
            await self._drain(max(0.0, grace_ends - time.monotonic()))
            self._story_deadline = time.monotonic() + STOP_GRACE
            self._polls_done.set()
            self._story_wake.set()
            await stories
            await self._save_at_stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if web:
                await web.stop()
            await self.client.aclose()
            await self.pools.aclose()
            await self.parsers.close()
            if self.stage.offload:
                self.stage.offload.close()
            self.engine.dispose()
            if self._lock:
                self._lock.close()
            log.info("stopped")

    def _tracked(self, job: Callable[[], Awaitable[None]],
                 overlaps: bool = False) -> Callable[[], Awaitable[None]]:
        """A scheduler job whose runs a stop waits for, and whose ticks never pile up.

        The scheduler cancels running jobs when it shuts down, mid-transaction, and
        logs each cancellation as a failed job. A tick that finds the job still
        running returns at once, unless the job handles `overlaps` itself: the
        scheduler would skip it with a warning, every tick of a slow delivery.
        """
        running: set[asyncio.Task[Any]] = set()

        @functools.wraps(job)
        async def run() -> None:
            if running and not overlaps:
                return
            task = asyncio.current_task()
            assert task is not None
            running.add(task)
            self._jobs.add(task)
            try:
                await job()
            finally:
                running.discard(task)
                self._jobs.discard(task)
        return run

    async def _start_web(self) -> WebServer | None:
        cfg = self.settings.metrics
        if not cfg.enabled:
            return None
        host, _, port = cfg.listen.rpartition(":")
        web = WebServer(host.strip("[]") or "127.0.0.1", int(port), self.readiness)
        try:
            await web.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {cfg.listen}: {exc.strerror}") from exc
        self.web = web
        return web

    async def _drain(self, grace: float) -> None:
        """Let in-flight polls finish; past the grace period cancel them and free leases."""
        tasks = list(self._inflight.values())
        if tasks:
            pending = set(tasks)
            if grace > 0:
                _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            with self.sessions.begin() as session:
                queries.release_leases(session, self.owner)
        except Exception:
            log.exception("could not release leases; they expire on their own")

    def stop(self) -> None:
        self._stop.set()


def _test_freeze_hook() -> None:
    """Tests only: while `$STORYWATCH_TEST_FREEZE_FILE` exists, block the event loop.

    The watchdog test needs a genuinely stuck loop (not a mock); nothing else sets this.
    """
    path = os.environ.get("STORYWATCH_TEST_FREEZE_FILE")
    while path and os.path.exists(path):
        time.sleep(0.05)


def rules_signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the rule files: cheap change detection."""
    try:
        files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml"))
        return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    except OSError:
        return ()
