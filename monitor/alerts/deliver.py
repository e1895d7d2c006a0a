"""The delivery loop: lease due outbox rows, send them, record each outcome.

Each row is retried on its own under its notifier's retry policy; a row that
runs out of attempts or time becomes a dead letter (and raises a meta-alert
on the fallback notifier) instead of vanishing. Outcomes are recorded only
after the send, so a crash in between means the row is sent again once its
lease expires: at least once, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from monitor import metrics
from monitor.alerts import outbox
from monitor.alerts.notify.base import Message, Notifier, Outcome, Thread
from monitor.alerts.render import RenderError
from monitor.alerts.retry import DEAD, DELIVERED, RetryPolicy
from monitor.config import DeliveryConfig, NotifierConfig
from monitor.db import queries
from monitor.db.models import AlertEvent, Delivery

log = logging.getLogger(__name__)


@runtime_checkable
class Resender(Protocol):
    """A notifier whose receiver forgets firing alerts unless they are re-sent."""

    resend_interval: float

    async def resend(self, payloads: list[dict[str, Any]]) -> Outcome: ...


@dataclass(frozen=True)
class Job:
    delivery_id: int
    alert_id: int
    notifier: str
    message: Message


class Deliverer:
    def __init__(self, sessions: sessionmaker[Session], notifiers: Mapping[str, Notifier],
                 cfg: DeliveryConfig, owner: str,
                 configs: Mapping[str, NotifierConfig] | None = None) -> None:
        self.sessions = sessions
        self.notifiers = notifiers
        self.cfg = cfg
        self.owner = owner
        configs = configs or {}
        self.policies = {name: RetryPolicy.of(cfg, configs.get(name)) for name in notifiers}
        self.default_policy = RetryPolicy.of(cfg, None)
        self.limits = {name: asyncio.Semaphore(configs[name].concurrency if name in configs
                                               else cfg.batch) for name in notifiers}
        self._resent: dict[str, float] = {}
        for name, notifier in notifiers.items():
            if isinstance(notifier, Resender):
                for result in ("ok", "error"):
                    metrics.RESENDS.labels(name, result)

    def _claim(self, now: datetime) -> list[Job]:
        with self.sessions.begin() as session:
            rows = queries.claim_deliveries(session, self.owner, now, self.cfg.batch,
                                            timedelta(seconds=self.cfg.lease))
            threads = queries.alert_threads(session, (ev.alert_id for _, ev in rows))
            jobs = []
            for d, ev in rows:
                t = threads.get((ev.alert_id, d.notifier))
                thread = Thread(t.channel, t.ts) if t else None
                jobs.append(Job(d.id, ev.alert_id, d.notifier,
                                Message(ev.payload, d.idempotency_key, thread)))
            return jobs

    def _record(self, results: list[tuple[Job, Outcome]], now: datetime) -> None:
        with self.sessions.begin() as session:
            rows = queries.deliveries_by_id(session, [job.delivery_id for job, _ in results])
            for job, outcome in results:
                row = rows.get(job.delivery_id)
                if row is None or row.status != "pending":
                    continue
                row.attempts += 1
                row.lease_owner = None
                row.lease_expires_at = None
                policy = self.policies.get(job.notifier, self.default_policy)
                age = (now - (row.requeued_at or row.created_at)).total_seconds()
                decision = policy.decide(outcome, row.attempts, age)
                if decision == DELIVERED:
                    row.status, row.delivered_at, row.last_error = "delivered", now, None
                    if outcome.thread:
                        queries.save_thread(session, job.alert_id, job.notifier,
                                            outcome.thread.channel, outcome.thread.ts, now)
                elif decision == DEAD:
                    row.status, row.dead_at, row.last_error = "dead", now, outcome.error
                    self._dead_letter(session, row, now)
                else:
                    row.last_error = outcome.error
                    row.next_attempt_at = now + timedelta(
                        seconds=policy.backoff(row.attempts, outcome.retry_after))
                metrics.DELIVERIES.labels(job.notifier, decision).inc()

    def _dead_letter(self, session: Session, row: Delivery, now: datetime) -> None:
        log.warning("delivery dead-lettered", extra={
            "delivery": row.id, "notifier": row.notifier, "error": row.last_error})
        fallback = self.cfg.dead_letter_notifier
        event = session.get(AlertEvent, row.event_id)
        assert event is not None
        # The fallback's own failures are not reported to itself: that would loop.
        if fallback and row.notifier != fallback and "dead_letter" not in event.payload:
            outbox.raise_dead_letter(session, row, event, fallback, now)

    async def _send(self, job: Job) -> Outcome:
        notifier = self.notifiers.get(job.notifier)
        if notifier is None:
            return Outcome(ok=False, retryable=False,
                           error=f"notifier {job.notifier!r} is no longer configured")
        started = time.perf_counter()
        try:
            async with self.limits[job.notifier]:
                return await notifier.send(job.message)
        except RenderError as exc:
            return Outcome(ok=False, retryable=False, error=str(exc))
        except Exception as exc:  # a notifier bug must not stop the loop
            log.exception("notifier raised", extra={"notifier": job.notifier})
            return Outcome(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
        finally:
            metrics.DELIVERY_DURATION.labels(job.notifier).observe(
                time.perf_counter() - started)

    async def run_once(self) -> int:
        """Deliver one batch of due rows; returns how many were attempted."""
        jobs = await asyncio.to_thread(self._claim, datetime.now(UTC))
        if not jobs:
            return 0
        outcomes = await asyncio.gather(*(self._send(job) for job in jobs))
        await asyncio.to_thread(self._record, list(zip(jobs, outcomes, strict=True)),
                                datetime.now(UTC))
        return len(jobs)

    async def resend_firing(self) -> None:
        """Re-post firing alerts to notifiers that need it, each at its own interval."""
        for name, notifier in self.notifiers.items():
            if not isinstance(notifier, Resender):
                continue
            now = time.monotonic()
            if now - self._resent.get(name, float("-inf")) < notifier.resend_interval:
                continue
            self._resent[name] = now
            payloads = await asyncio.to_thread(self._firing, name)
            if not payloads:
                continue
            outcome = await notifier.resend(payloads)
            metrics.RESENDS.labels(name, "ok" if outcome.ok else "error").inc()
            if not outcome.ok:
                log.warning("re-sending firing alerts failed",
                            extra={"notifier": name, "error": outcome.error})

    def _firing(self, notifier: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return queries.firing_payloads(session, notifier)
