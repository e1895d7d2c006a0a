"""A small, lively deployment to watch: outlets that keep publishing, a broken and a
gone feed, one healthy and one failing webhook, and the daemon as a subprocess.

Used by the Prometheus/Grafana tests and by bench/render_dashboard.py, so the
pictures in docs/ come from the same kind of run the tests check.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.demo.render import Item, rss
from tests.helpers import ROOT, Proc, write_config
from tests.promrun import free_port
from tests.servers import Reply, Request, Responder, Server

OUTLETS = 4
TOPICS = ("Port workers strike shuts container terminals",
          "Flooding closes rail line between two cities",
          "Central bank raises interest rates by half a point",
          "Wildfire forces evacuation of mountain villages")


class Workload:
    def __init__(self, tmp: Path, period: float = 4.0) -> None:
        self.started = time.monotonic()
        self.period = period
        self.feeds = Server()
        self.receiver = Server()
        for i in range(OUTLETS):
            self.feeds.routes[f"/outlet{i}.xml"] = self._outlet(i)
        self.feeds.routes["/broken.xml"] = Reply(500, b"upstream exploded")
        self.feeds.routes["/gone.xml"] = Reply(410, b"gone")
        self.receiver.routes["/hook"] = Reply(200, b"ok")
        self.receiver.routes["/flaky"] = Reply(503, b"try later")
        self.metrics_port = free_port()
        feeds = [{"url": self.feeds.url(f"/outlet{i}.xml"), "name": f"Outlet {i}",
                  "interval": 1} for i in range(OUTLETS)]
        feeds += [{"url": self.feeds.url(p), "interval": 2} for p in ("/broken.xml", "/gone.xml")]
        config = write_config(tmp, {
            "state_dir": str(tmp), "rules_dir": str(ROOT / "rules"), "feeds": feeds,
            "polling": {"min_interval": 0.2, "dispatch_interval": 0.2, "retry_failed_after": 1,
                        "allowed_networks": ["127.0.0.0/8"], "host_spacing": 0,
                        "host_concurrency": 20},
            "delivery": {"interval": 0.2, "backoff_initial": 0.2, "backoff_max": 0.5,
                         "max_attempts": 3},
            "notifiers": {"hook": {"type": "webhook", "url": self.receiver.url("/hook")},
                          "flaky": {"type": "webhook", "url": self.receiver.url("/flaky")}},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
        })
        self.daemon = Proc(tmp, ["-c", str(config), "run"])
        self.daemon.wait_for("storywatch running")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def _outlet(self, outlet: int) -> Responder:
        """Every `period` seconds a new story breaks; outlets pick it up one after another."""
        base = datetime(2026, 1, 1, tzinfo=UTC)

        def feed(_req: Request) -> Reply:
            tick = int((time.monotonic() - self.started) / self.period)
            items = []
            for k in range(max(0, tick - 5), tick + 1):
                if (k + outlet) % OUTLETS == OUTLETS - 1 and k == tick:
                    continue  # one outlet is always a tick late
                topic = TOPICS[k % len(TOPICS)]
                items.append(Item(f"o{outlet}-{k}", f"{topic} (update {k})",
                                  f"{topic}. Officials confirmed the report number {k} today.",
                                  f"https://outlet{outlet}.example/{k}",
                                  base + timedelta(minutes=k)))
            return Reply(body=rss(f"Outlet {outlet}", f"https://outlet{outlet}.example/", items),
                         headers={"Content-Type": "application/rss+xml"})
        return feed

    def close(self) -> None:
        if self.daemon.proc.poll() is None:
            self.daemon.proc.terminate()
            self.daemon.wait()
        self.feeds.close()
        self.receiver.close()
