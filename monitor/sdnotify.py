"""sd_notify spoken directly: a datagram to `$NOTIFY_SOCKET`, no library needed."""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    """Sends state lines to systemd; a no-op when not started by systemd."""

    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        self.address = addr or None
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        if self._sock is None or self.address is None:
            return
        with contextlib.suppress(OSError):
            self._sock.sendto("\n".join(lines).encode(), self.address)

    def watchdog_interval(self) -> float | None:
        """Half of `$WATCHDOG_USEC` in seconds, when systemd asked for pings."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6
