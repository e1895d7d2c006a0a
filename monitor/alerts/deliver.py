"""The delivery loop: lease due outbox rows, send them, record each outcome.

Each row is retried on its own with exponential backoff and full jitter,
honouring `Retry-After`; a row that runs out of attempts becomes a dead
letter instead of vanishing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from monitor import metrics
from monitor.alerts.notify.base import Notifier, Outcome
from monitor.config import DeliveryConfig
from monitor.db import queries
from monitor.db.models import Delivery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    delivery_id: int
    notifier: str
    key: str
    payload: dict[str, Any]
    attempts: int


def backoff(cfg: DeliveryConfig, attempts: int, retry_after: float | None,
            rng: random.Random | None = None) -> float:
    """Seconds before the next attempt: full-jitter exponential, at least `Retry-After`."""
    cap = min(cfg.backoff_max, cfg.backoff_initial * 2 ** max(0, attempts - 1))
    delay = (rng or random).uniform(cap / 2, cap)
    return max(delay, retry_after or 0.0)


class Deliverer:
    def __init__(self, sessions: sessionmaker[Session], notifiers: dict[str, Notifier],
                 cfg: DeliveryConfig, owner: str) -> None:
        self.sessions = sessions
        self.notifiers = notifiers
        self.cfg = cfg
        self.owner = owner

    def _claim(self, now: datetime) -> list[Job]:
        with self.sessions.begin() as session:
            rows = queries.claim_deliveries(session, self.owner, now, self.cfg.batch,
                                            timedelta(seconds=self.cfg.lease))
            return [Job(d.id, d.notifier, d.idempotency_key, ev.payload, d.attempts)
                    for d, ev in rows]

    def _record(self, results: list[tuple[Job, Outcome]], now: datetime) -> None:
        with self.sessions.begin() as session:
            for job, outcome in results:
                row = session.get(Delivery, job.delivery_id)
                if row is None or row.status != "pending":
                    continue
                row.attempts += 1
                row.lease_owner = None
                row.lease_expires_at = None
                if outcome.ok:
                    row.status, row.delivered_at, row.last_error = "delivered", now, None
                    label = "delivered"
                elif outcome.retryable and row.attempts < self.cfg.max_attempts:
                    row.last_error = outcome.error
                    row.next_attempt_at = now + timedelta(
                        seconds=backoff(self.cfg, row.attempts, outcome.retry_after))
                    label = "retry"
                else:
                    row.status, row.last_error = "dead", outcome.error
                    label = "dead"
                    log.warning("delivery dead-lettered", extra={
                        "delivery": row.id, "notifier": job.notifier, "error": outcome.error})
                metrics.DELIVERIES.labels(job.notifier, label).inc()

    async def _send(self, job: Job) -> Outcome:
        notifier = self.notifiers.get(job.notifier)
        if notifier is None:
            return Outcome(ok=False, retryable=False,
                           error=f"notifier {job.notifier!r} is no longer configured")
        started = time.perf_counter()
        try:
            return await notifier.send(job.payload, job.key)
        except Exception as exc:
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
