"""A real `NOTIFY_SOCKET`: a datagram socket that records what the daemon tells systemd."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[list[str]] = []
        """One entry per datagram, split into its `KEY=value` lines."""
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode().splitlines())

    def lines(self) -> list[str]:
        with self._lock:
            return [line for msg in self.messages for line in msg]

    def count(self, line: str) -> int:
        return self.lines().count(line)

    def wait_for(self, line: str, after: int = 0, timeout: float = 30) -> int:
        """Wait until `line` occurs at an index >= `after`; returns that index."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.lines()
            for i in range(after, len(seen)):
                if seen[i] == line:
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"{line!r} not received; got {seen}")
            time.sleep(0.05)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
