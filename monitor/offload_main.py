"""An offload process's main loop: (sequence number, function, calls) in, results out.

Started by `offload.Offload` through `children.Child`. It imports nothing
until a request names a function, whose module the unpickler then imports,
so the process holds only what that work needs. A thread reads requests as
they come, so the parent's sends never wait on our replies (both sides
blocked on a full socket would otherwise be possible with large results).
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

_END = None


def _read(conn: Connection, requests: queue.SimpleQueue[Any]) -> None:
    while True:
        try:
            requests.put(conn.recv())
        except (EOFError, OSError):
            requests.put(_END)
            return


def serve(conn: Connection) -> None:
    """Answer each request with (seq, "ok", results) or (seq, "error", message), until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(conn, requests), daemon=True).start()
    conn.send(("ready", None))
    while (request := requests.get()) is not _END:
        seq, func, calls = request
        try:
            reply: tuple[int, str, object] = (seq, "ok", [func(*args) for args in calls])
        except Exception as exc:
            reply = (seq, "error", f"{type(exc).__name__}: {exc}"[:500])
        try:
            conn.send(reply)
        except OSError:
            return


def main() -> None:
    serve(Connection(int(sys.argv[1])))
