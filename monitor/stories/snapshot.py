"""The story index on disk, so a restart replays only what changed since it was saved.

A file is: `MAGIC`, one line of JSON (the `Header`: format, what the index was
built with, whose database and up to which story member), the `StoryIndex`
pickled, and the blake2b digest of everything before it. It is written to a
temporary file beside the target, fsynced and renamed over it, then the
directory is fsynced: a crash at any moment leaves the previous snapshot or the
new one, never a mix. `fork_write` does the writing in a forked child, which
sees the index as it was at the fork (copy-on-write, like Redis' BGSAVE), so
the daemon's event loop only pauses for the fork itself.

Loading refuses anything unexpected (`Refused`) and the caller rebuilds from the
database instead. The whole index is pickled, whatever its fields, so its
layout can change without touching this module (`built_with` then no longer
matches, see `code_digest`). Unpickling only constructs the classes defined
in `monitor.stories` and those of `ALLOWED` (standard containers and values):
a tampered file can at worst fail to load or fail the digest, it cannot run
code. The file lives in the service's state directory, written by the service
user with mode 0600; `read` refuses one that another user could have written.
"""

from __future__ import annotations

import copyreg
import gc
import hashlib
import io
import json
import os
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, NoReturn
from zoneinfo import ZoneInfo

from monitor.stories import cluster, nearcopy

FORMAT = 1
"""Bump when the file layout (not the index's) changes."""
MAGIC = b"storywatch story index\n"
DIGEST = 32
"""Bytes of the trailing blake2b digest."""
PACE_BYTES = 4 << 20
"""Bytes read between two `pace` calls while loading."""
MAX_HEADER = 64 << 10
NAME = "story-index.snapshot"
"""The file's name in the state directory."""

OWN = "monitor.stories."
"""Classes defined in these modules may be constructed: the index and its parts."""
ALLOWED = {
    ("builtins", name) for name in ("object", "set", "frozenset", "bytearray", "list", "dict",
                                    "tuple", "int", "float", "str", "bytes")} | {
    ("collections", "deque"), ("collections", "Counter"), ("collections", "OrderedDict"),
    ("collections", "defaultdict"), ("array", "array"), ("array", "_array_reconstructor"),
    ("datetime", "datetime"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("zoneinfo", "ZoneInfo"), ("copyreg", "_reconstructor"),
}
"""Besides OWN's classes, the (module, name) pairs the loader may construct: plain
containers and values, whatever layout the index takes."""

Pace = Callable[[float], bool]
"""Told the seconds spent since its last call; returns False to stop the load (or the
rebuild, `StoryStage.rebuild`)."""


class Refused(Exception):
    """This file is not a snapshot this process may load; the message says why."""


class Stopped(Exception):
    """`pace` asked to stop loading (the daemon is stopping)."""


@dataclass(frozen=True)
class Header:
    format: int
    built_with: dict[str, Any]
    database: str
    """The database's random id (`queries.database_id`)."""
    member: int
    """The newest story member the index holds (0: none)."""
    entry: int
    """That member's entry and story: the database must still say so."""
    story: int
    saved_at: str
    documents: int
    stories: int


def code_digest() -> str:
    """Digest of the clustering code: a snapshot is only loaded by the code that saved it.

    Any change to tokenising, features or the index layout changes it, so an
    upgrade rebuilds once instead of loading state the new code would build differently.
    """
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(Path(cluster.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def built_with(index: cluster.StoryIndex) -> dict[str, Any]:
    """What decides the index's contents besides its documents: settings, constants, code."""
    constants = {f"{m.__name__}.{k}": repr(v) for m in (cluster, nearcopy)
                 for k, v in sorted(vars(m).items())
                 if k.isupper() and isinstance(v, int | float | str | timedelta)}
    return {"window": index.window.total_seconds(), "threshold": index.threshold,
            "constants": constants, "code": _CODE}


_CODE = code_digest()


class _Hashing(io.RawIOBase):
    """A file wrapper that digests what passes through and paces long reads."""

    def __init__(self, raw: IO[bytes], pace: Pace | None = None) -> None:
        super().__init__()
        self.raw, self.pace = raw, pace
        self.digest = hashlib.blake2b(digest_size=DIGEST)
        self.count = self.since_pace = 0
        self.started = time.monotonic()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.count += len(data)
        return self.raw.write(data)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self._took(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = self.raw.readline(-1 if size is None else size)
        self._took(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _took(self, data: bytes) -> None:
        self.digest.update(data)
        self.count += len(data)
        self.since_pace += len(data)
        if self.pace and self.since_pace >= PACE_BYTES:
            if not self.pace(time.monotonic() - self.started):
                raise Stopped
            self.since_pace, self.started = 0, time.monotonic()


def _zone(zone: ZoneInfo) -> tuple[Any, ...]:
    return ZoneInfo, (zone.key,)


_REDUCERS = {**copyreg.dispatch_table, ZoneInfo: _zone}
"""PostgreSQL's times carry a `ZoneInfo`, which pickles by default through `getattr`:
rebuilt from its key instead, so the loader's allow-list needs no `getattr`."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        if module.startswith(OWN):
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise Refused(f"the file names {module}.{name}, which a story index never holds")


def write(path: Path, index: cluster.StoryIndex, header: Header) -> int:
    """Save atomically (temporary file, fsync, rename, fsync the directory); returns bytes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            out = _Hashing(f)
            out.write(MAGIC)
            out.write(json.dumps(asdict(header), sort_keys=True).encode() + b"\n")
            pickler = pickle.Pickler(out, protocol=5)
            pickler.dispatch_table = _REDUCERS
            # No memo: the index holds no cycles, and a memo would keep every bytes copy
            # of its columns alive on load until the end (twice the index at the peak).
            pickler.fast = True
            pickler.dump(index)
            f.write(out.digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return out.count + DIGEST


def read_header(f: IO[bytes]) -> Header:
    """The header at the start of an open snapshot (raises Refused)."""
    if f.read(len(MAGIC)) != MAGIC:
        raise Refused("not a story index snapshot")
    line = f.readline(MAX_HEADER)
    try:
        fields = json.loads(line)
        header = Header(**fields)
    except (ValueError, TypeError) as exc:
        raise Refused(f"unreadable header: {exc}") from None
    if not isinstance(header.built_with, dict):
        raise Refused("unreadable header: no settings")
    if header.format != FORMAT:
        raise Refused(f"file format {header.format}, this version reads {FORMAT}")
    return header


def mismatch(header: Header, expected: dict[str, Any]) -> str | None:
    """Why an index built as `header` says is not the one these settings would build."""
    got = header.built_with
    for key in ("window", "threshold"):
        if got.get(key) != expected[key]:
            return f"built with {key} {got.get(key)}, configured {expected[key]}"
    if got.get("constants") != expected["constants"]:
        changed = sorted(k for k in expected["constants"]
                         if got.get("constants", {}).get(k) != expected["constants"][k])
        return f"built with other clustering constants ({', '.join(changed) or 'removed'})"
    if got.get("code") != expected["code"]:
        return "built by another version of the clustering code"
    return None


def read(path: Path, check: Callable[[Header], None],
         pace: Pace | None = None) -> tuple[Header, cluster.StoryIndex]:
    """Load a snapshot; `check` vets the header (raising Refused) before the index is read.

    Raises Refused for anything but a complete, intact snapshot (OSError if unreadable,
    Stopped when `pace` says so). The digest is checked before the index is returned.
    """
    with path.open("rb") as raw:
        st = os.fstat(raw.fileno())
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise Refused("the file is not the service user's alone (owner or mode)")
        f = _Hashing(raw, pace)
        header = read_header(f)  # type: ignore[arg-type]
        check(header)
        collecting = gc.isenabled()
        gc.disable()  # each pass over millions of young objects would hold the interpreter
        try:
            index = _Unpickler(f).load()
            gc.freeze()  # nor walk them all once enabled again (see `StoryStage._install`)
        except (Refused, Stopped):
            raise
        except Exception as exc:  # truncated or corrupt: pickle raises many kinds
            raise Refused(f"damaged index ({type(exc).__name__}: {exc})") from None
        finally:
            if collecting:
                gc.enable()
        expected = f.digest.digest()
        if raw.read(DIGEST + 1) != expected:
            raise Refused("damaged or truncated file (digest differs)")
    if not isinstance(index, cluster.StoryIndex):
        raise Refused(f"holds a {type(index).__name__}, not a story index")
    return header, index


def fork_write(path: Path, index: cluster.StoryIndex, header: Header,
               niceness: int = 0) -> tuple[int, int]:
    """Write in a forked child; returns (pid, fd of a pipe that gets its result line).

    The child keeps only the pipe and standard streams: inherited sockets and
    lock files (the HTTP port, the SQLite instance lock) stay the parent's
    alone, so a child outliving a killed parent blocks no restart. It takes no
    signal handlers of the parent's event loop and never returns to it; `niceness`
    lowers its priority (see `os.nice`).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(path, index, header, w, niceness)
    os.close(w)
    return pid, r


def _child(path: Path, index: cluster.StoryIndex, header: Header, pipe: int,
           niceness: int) -> NoReturn:
    code, result = 1, "error: interrupted"
    try:
        gc.disable()  # the collector would touch (and copy) every page of the index
        os.nice(niceness)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, pipe)
        os.closerange(pipe + 1, os.sysconf("SC_OPEN_MAX"))
        result, code = f"ok {write(path, index, header)}", 0
    except BaseException as exc:
        result = f"error {type(exc).__name__}: {exc}"
    finally:
        try:
            os.write(pipe, result.encode()[:4000])
        finally:
            os._exit(code)


def child_result(pid: int, fd: int) -> tuple[bool, str]:
    """Wait for a `fork_write` child (blocking): (saved?, bytes written or the error)."""
    with os.fdopen(fd, "rb") as pipe:
        text = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if text.startswith("ok ") and os.waitstatus_to_exitcode(status) == 0:
        return True, text[3:]
    return False, text.removeprefix("error ") or f"exit status {os.waitstatus_to_exitcode(status)}"
