"""A local feed server for the demo: each outlet's items appear as time passes.

Answers conditional GETs with 304 like a well-behaved web server, so the demo
also shows polite polling.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from monitor.demo.render import Item, render


@dataclass(frozen=True)
class Outlet:
    slug: str
    name: str
    format: str
    tags: list[str]
    items: list[tuple[float, Item]]


def load_outlets(path: Path) -> list[Outlet]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    outlets = []
    for o in doc["outlets"]:
        items = []
        for it in o["items"]:
            published = datetime.fromisoformat(str(it["published"]).replace("Z", "+00:00"))
            items.append((float(it.get("offset_seconds", 0)),
                          Item(it["guid"], it["title"], it["text"], it.get("link"), published)))
        outlets.append(Outlet(o["slug"], o["name"], o["format"], list(o.get("tags", [])), items))
    return outlets


class DemoFeedServer:
    """Serves `/feeds/<slug>` on 127.0.0.1; `speed` compresses the item timeline.

    The sample news carries dates of its own; they are moved as a whole so the
    latest is the demo's start. Spacing between reports (hours within a story,
    days between events) is kept, and the news is recent, as a live feed's is:
    a story window measured from today would otherwise have closed long ago.
    """

    def __init__(self, outlets: list[Outlet], speed: float = 1.0) -> None:
        latest = max((it.published for o in outlets for _, it in o.items if it.published),
                     default=None)
        shift = datetime.now(UTC) - latest if latest else None
        self.outlets = {o.slug: replace(o, items=[
            (off, replace(it, published=it.published + shift)
             if shift and it.published else it) for off, it in o.items]) for o in outlets}
        self.speed = speed
        self.started = time.monotonic()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                server.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, slug: str) -> str:
        return f"http://127.0.0.1:{self.port}/feeds/{slug}"

    def elapsed(self) -> float:
        return (time.monotonic() - self.started) * self.speed

    def last_offset(self) -> float:
        return max(off for o in self.outlets.values() for off, _ in o.items)

    def answer(self, req: BaseHTTPRequestHandler) -> None:
        outlet = self.outlets.get(req.path.rsplit("/", 1)[-1])
        if outlet is None or not req.path.startswith("/feeds/"):
            req.send_error(404)
            return
        now = self.elapsed()
        visible = [it for off, it in outlet.items if off <= now]
        visible.sort(key=lambda it: it.published or datetime.min, reverse=True)
        body, ctype = render(outlet.format, outlet.name,
                             f"https://{outlet.slug}.example/", visible)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if req.headers.get("If-None-Match") == etag:
            req.send_response(304)
            req.send_header("ETag", etag)
            req.end_headers()
            return
        req.send_response(200)
        req.send_header("Content-Type", f"{ctype}; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        req.send_header("ETag", etag)
        req.send_header("Last-Modified", formatdate(usegmt=True))
        req.end_headers()
        req.wfile.write(body)

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
