"""Alert delivery benchmark: `.venv/bin/python bench/alerts.py [--alerts N] [--fail 0.01]`.

Fills a fresh SQLite outbox with N pending alert changes, then drains it
through the real Deliverer and webhook notifier to a local HTTP receiver
that answers 500 to a fraction of requests (those rows are retried). Prints
the drain time and deliveries per second for two batch/concurrency settings.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from monitor.alerts.deliver import Deliverer
from monitor.alerts.notify import build_notifiers
from monitor.alerts.notify.base import DELIVERED, Message, Notifier, Outcome
from monitor.alerts.outbox import fingerprint, idempotency_key
from monitor.alerts.preview import Fixture, payload_for
from monitor.config import DeliveryConfig, NotifierConfig
from monitor.db import queries
from monitor.db.engine import make_engine, session_factory, upgrade
from monitor.db.models import Alert
from monitor.rules.schema import Rule

RULE = Rule(id="bench", title="Benchmark alert", severity="high")


def _serve(port: Any, accepted: Any, failed: Any, fail: float) -> None:
    """The receiver process: its own interpreter, so it does not share the sender's GIL."""
    rng = random.Random(1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = rng.random() >= fail
            counter = accepted if ok else failed
            with counter.get_lock():
                counter.value += 1
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        request_queue_size = 256
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), Handler)
    port.value = httpd.server_address[1]
    httpd.serve_forever()


class Receiver:
    """A local webhook receiver in a child process, failing a fraction of requests with 500."""

    def __init__(self, fail: float) -> None:
        self._accepted, self._failed, port = (mp.Value("i", 0) for _ in range(3))
        self.proc = mp.Process(target=_serve, args=(port, self._accepted, self._failed, fail),
                               daemon=True)
        self.proc.start()
        while not port.value:
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port.value}/hook"

    @property
    def accepted(self) -> int:
        return int(self._accepted.value)

    @property
    def failed(self) -> int:
        return int(self._failed.value)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join()


def fill(db: Path, n: int) -> tuple[str, float]:
    """N firing alerts with one pending webhook delivery each; returns (url, seconds).

    The engine is disposed at the end, which checkpoints the WAL into the file.
    """
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    started = time.perf_counter()
    now = datetime.now(UTC)
    template = payload_for(RULE, Fixture(), now).payload
    with sessions.begin() as session:
        for i in range(n):
            fp = fingerprint(RULE.id, f"bench:{i}")
            alert = Alert(fingerprint=fp, rule_id=RULE.id, group_key=f"bench:{i}",
                          state="firing", severity="high", title=RULE.title, labels={}, seq=1,
                          sources=[], first_fired_at=now, last_changed_at=now)
            session.add(alert)
            session.flush()
            key = idempotency_key(fp, "firing", 1)
            payload = {**template, "fingerprint": fp, "idempotency_key": key}
            queries.add_alert_event(session, alert, "firing", payload, ["hook"], [key], now)
    engine.dispose()
    return url, time.perf_counter() - started


class NullNotifier:
    """Accepts everything at once: what is left of the drain time is the outbox itself."""

    name = kind = "null"

    async def send(self, msg: Message) -> Outcome:
        return DELIVERED

    def preview(self, msg: Message) -> str:
        return ""


async def drain(url: str, hook: str | None, batch: int,
                concurrency: int) -> tuple[float, int]:
    """Deliver until nothing is pending (to `hook`, or nowhere); returns (seconds, attempts)."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    configs = TypeAdapter(dict[str, NotifierConfig]).validate_python(
        {"hook": {"type": "webhook", "url": hook or "-", "concurrency": concurrency}})
    cfg = DeliveryConfig(batch=batch, backoff_initial=0.05, backoff_max=0.5)
    attempts = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        notifiers: dict[str, Notifier] = (build_notifiers(configs, client) if hook
                                          else {"hook": NullNotifier()})
        deliverer = Deliverer(sessions, notifiers, cfg, "bench", configs)
        started = time.perf_counter()
        while True:
            n = await deliverer.run_once()
            attempts += n
            if n:
                continue
            with sessions() as session:
                pending, _, dead = queries.outbox_stats(session, datetime.now(UTC))
            assert dead == 0, "a row was dead-lettered"
            if not pending:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--fail", type=float, default=0.01, help="fraction answered 500")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    with tempfile.TemporaryDirectory() as tmp:
        filled = Path(tmp) / "filled.db"
        _, fill_s = fill(filled, args.alerts)
        print(f"filled an outbox with {args.alerts} pending alerts in {fill_s:.1f}s")

        def fresh() -> str:
            db = Path(tmp) / "run.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            shutil.copy(filled, db)
            return f"sqlite:///{db}"

        for batch in (50, 500):
            elapsed, _ = asyncio.run(drain(fresh(), None, batch, batch))
            print(f"outbox only (null notifier), batch {batch:>3}: drained in {elapsed:.2f}s = "
                  f"{args.alerts / elapsed:,.0f} rows/s")
        for batch, concurrency in ((50, 10), (200, 50)):
            receiver = Receiver(args.fail)
            elapsed, attempts = asyncio.run(drain(fresh(), receiver.url, batch, concurrency))
            receiver.close()
            print(f"webhook, batch {batch:>3}, concurrency {concurrency:>2}: drained in "
                  f"{elapsed:.2f}s = {args.alerts / elapsed:,.0f} deliveries/s; {attempts} "
                  f"attempts, {receiver.failed} answered 500 and were retried, "
                  f"{receiver.accepted} accepted")


if __name__ == "__main__":
    main()
