"""Helper processes of our own: a plain subprocess and our end of a socket pair.

Plain subprocesses rather than multiprocessing ones: multiprocessing's spawn
also starts a resource-tracker process (another interpreter, 13 MB) and makes
the child import the parent's main module to unpickle its target. A child runs
`MODULE.main()` with the socket's descriptor as its argument, from this very
`monitor` package and (with `-P`) nothing from the working directory, where a
stray `feedparser.py` would otherwise be imported. Each child says "ready" once
its imports are done, and exits when our end closes, so it never outlives us,
not even a `kill -9`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

STARTUP_TIMEOUT = 60.0
_ROOT = str(Path(__file__).resolve().parents[1])


def program(module: str) -> str:
    """The `python -c` text of a child that runs `module.main()` from this package."""
    return f"import sys; sys.path.insert(0, {_ROOT!r}); from {module} import main; main()"


class Child:
    """One child process running `code` (see `program`); RuntimeError if it does not start."""

    def __init__(self, code: str, what: str) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-c", code, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        self.conn = Connection(ours.detach())
        try:
            ready = self.conn.poll(STARTUP_TIMEOUT) and self.conn.recv()[0] == "ready"
        except EOFError:  # it died on the way (an import failed, say)
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(f"{what} did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.conn.close()
