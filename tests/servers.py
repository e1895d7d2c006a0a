"""Real HTTP servers on 127.0.0.1 for tests: a programmable feed server and a receiver.

Each answers from a table the test fills in, records every request, and can
misbehave on purpose (status codes, Retry-After, slow or endless bodies).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering."""
    trickle: float = 0.0
    """Seconds between 1-byte chunks of the body (a slow-loris server)."""
    etag: bool = True
    """Send an ETag and answer a matching If-None-Match with 304."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    port: int = 0
    """The client's port: requests with the same port came over one connection."""

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Request], Reply]


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 128
    """The default listen backlog (5) drops connections a busy daemon opens at once."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (as the oversized-body tests make it) is no server error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Server:
    """A threaded HTTP server answering from `routes` (path → Reply or callable)."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | Responder] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, self.path, {k.lower(): v for k, v in
                                                        self.headers.items()},
                              self.rfile.read(length) if length else b"",
                              self.client_address[1])
                with server.lock:
                    server.requests.append(req)
                route = server.routes.get(self.path.split("?", 1)[0])
                reply = route(req) if callable(route) else route
                if reply is None:
                    reply = Reply(404, b"not found")
                server.send(self, req, reply)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, req: Request, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        headers = dict(reply.headers)
        if reply.etag and reply.status == 200 and reply.body:
            tag = '"' + hashlib.sha256(reply.body).hexdigest()[:16] + '"'
            headers.setdefault("ETag", tag)
            if req.headers.get("if-none-match") == tag:
                handler.send_response(304)
                handler.send_header("ETag", tag)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
        try:
            handler.send_response(reply.status)
            for k, v in headers.items():
                handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            if reply.trickle:
                for i in range(len(reply.body)):
                    handler.wfile.write(reply.body[i:i + 1])
                    handler.wfile.flush()
                    time.sleep(reply.trickle)
            else:
                handler.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
