"""What /proc says of a process: its CPU time and memory, for the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of live processes (and of the children they reaped), from /proc."""
    ticks = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def kib_field(path: str, key: str) -> int:
    """A `key: N kB` line of a /proc file, in bytes (0 once the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
