"""Polling benchmark: Storywatch against feed2exec and newsboat on the same local feeds.

Feeds are static RSS files served by nginx (ETag, Last-Modified and 304s as a
real site would answer). Scenarios:
  cold   N feeds x 20 entries, all new, until every entry is stored
  warm   the same feeds again, unchanged (all 304); for Storywatch also "warm-in":
         one such cycle inside a daemon that is already running (no start-up)
  mixed  M feeds: 80% unchanged, 15% changed (3 new entries each), 5% errors or slow
Each tool is measured as a subprocess: wall time, CPU seconds (user+system of
the whole process tree), peak memory of the process tree (the sum of RSS, which counts
pages shared by a forked child twice, and the sum of PSS, which does not), and entries stored
(checked against the truth). For Storywatch also the time until its story stage has
clustered every stored entry. The "httpx" row is a bare httpx client fetching the same
feeds (`bench/httpx_floor.py`): what any httpx-based poller pays at least, here.
Run: `bench/poll` (see --help).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from bench.procfs import cpu_of, kib_field

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
SYLLABLES = ("ka ri to mel san vor del ix pa quen lor ti ba nu gre fal om ste ru yan "
             "cor be dra lin mos pe ur hal zen ko vi sel tar no ew ga fi").split()
_RNG = random.Random(42)
WORDS = sorted({"".join(_RNG.choices(SYLLABLES, k=4)) for _ in range(100_000)})
"""Many made-up words: titles rarely share enough words to cluster,
as with real news, so the benchmark measures polling rather than one giant story."""
NOW = datetime.now(UTC).replace(microsecond=0)
PACKAGES = {"nginx": "nginx", "feed2exec": "feed2exec", "newsboat": "newsboat"}


# -- feeds -----------------------------------------------------------------------
def item_xml(feed: int, n: int, rng: random.Random) -> str:
    title = " ".join(rng.choice(WORDS) for _ in range(7)).capitalize()
    text = " ".join(rng.choice(WORDS) for _ in range(60))
    when = format_datetime(NOW - timedelta(minutes=17 * n + feed % 13), usegmt=True)
    return (f"<item><guid isPermaLink='false'>f{feed}-e{n}</guid><title>{escape(title)} {n}"
            f"</title><link>https://site{feed}.example/a/{n}</link><pubDate>{when}</pubDate>"
            f"<description>{escape(text)}</description></item>")


def write_feed(path: Path, feed: int, first: int, count: int) -> None:
    """Entries first..first+count-1, newest (highest number) first."""
    rng = random.Random(feed * 7919)
    items = [item_xml(feed, n, rng) for n in range(first + count - 1, first - 1, -1)]
    path.write_text(f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
                    f"<title>Site {feed}</title><link>https://site{feed}.example/</link>"
                    f"<description>bench</description>{''.join(items)}</channel></rss>")


@dataclass
class Corpus:
    urls: list[str]
    truth: int


def make_cold(root: Path, base: str, feeds: int, entries: int) -> Corpus:
    (root / "c").mkdir(parents=True, exist_ok=True)
    for i in range(feeds):
        write_feed(root / "c" / f"{i}.xml", i, 0, entries)
    return Corpus([f"{base}/c/{i}.xml" for i in range(feeds)], feeds * entries)


def make_mixed(root: Path, base: str, feeds: int, entries: int) -> tuple[Corpus, Callable[[], int]]:
    """80% plain, 15% to be changed later, 2.5% 503 errors, 2.5% slow (rate-limited by nginx)."""
    for sub in ("m", "slow"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    urls: list[str] = []
    changed: list[int] = []
    truth = 0
    for i in range(feeds):
        kind = i % 40
        if kind == 0:
            urls.append(f"{base}/err/{i}.xml")
            continue
        sub = "slow" if kind == 1 else "m"
        write_feed(root / sub / f"{i}.xml", 100_000 + i, 0, entries)
        urls.append(f"{base}/{sub}/{i}.xml")
        truth += entries
        if kind in range(2, 8):
            changed.append(i)

    def change() -> int:
        for i in changed:
            write_feed(root / "m" / f"{i}.xml", 100_000 + i, 3, entries)  # 3 new, 3 dropped
        return len(changed) * 3

    return Corpus(urls, truth), change


NGINX_CONF = """
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log crit;
user root;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path {work}/tmp-body;
  proxy_temp_path {work}/tmp-proxy;
  fastcgi_temp_path {work}/tmp-fastcgi;
  uwsgi_temp_path {work}/tmp-uwsgi;
  scgi_temp_path {work}/tmp-scgi;
  types {{ application/rss+xml xml; }}
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location /err/ {{ return 503; }}
    location /slow/ {{ limit_rate 2k; }}
  }}
}}
"""


def start_nginx(work: Path, root: Path, port: int) -> subprocess.Popen[bytes]:
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, root=root, port=port))
    proc = subprocess.Popen([shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(work),
                             "-g", "daemon off;"])
    for _ in range(100):
        try:
            import urllib.request
            urllib.request.urlopen(f"http://127.0.0.1:{port}/none", timeout=1)
        except OSError as exc:
            if "404" in str(exc):
                return proc
        time.sleep(0.05)
    raise SystemExit("nginx did not start; see nginx-error.log")


# -- measuring -------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


@dataclass(frozen=True)
class Memory:
    rss: int = 0
    """Sum of the processes' RSS: a page two processes share (a forked child) counts twice."""
    pss: int = 0
    """Sum of their proportional set sizes: a shared page is split between its sharers."""

    def peak(self, other: Memory) -> Memory:
        return Memory(max(self.rss, other.rss), max(self.pss, other.pss))


def memory_of(pids: list[int]) -> Memory:
    return Memory(sum(kib_field(f"/proc/{p}/status", "VmRSS:") for p in pids),
                  sum(kib_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))


@dataclass
class Result:
    tool: str
    scenario: str
    wall: float
    cpu: float
    peak: Memory
    stored: int
    truth: int
    polling: float | None = None
    """Wall time after start-up (Storywatch: from its "running" log line)."""
    drained: float | None = None
    """Storywatch: wall time until every stored entry was clustered (story stage idle)."""
    drained_cpu: float | None = None


def measure(tool: str, scenario: str, cmd: list[str], done: Callable[[], bool] | None,
            stored: Callable[[], int], truth: int, log_dir: Path,
            env: dict[str, str] | None = None, timeout: float = 1800,
            ready_line: bytes | None = None,
            drained: Callable[[], bool] | None = None) -> Result:
    """Run `cmd` until it exits (or `done()` holds, then SIGTERM it).

    With `drained`, the run goes on after `done()` until `drained()` holds too;
    wall time and CPU are taken when `done()` first held, and again at the end.
    """
    before = os.times()
    started = time.monotonic()
    log = log_dir / f"{tool}-{scenario}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT)
    peak = Memory()
    wall: float | None = None
    cpu_done = 0.0
    ready: float | None = None
    sampled = 0.0
    while True:
        if time.monotonic() - sampled > 0.2:
            peak = peak.peak(memory_of(tree(proc.pid)))
            sampled = time.monotonic()
        if ready_line and ready is None and ready_line in log.read_bytes():
            ready = time.monotonic() - started
        if proc.poll() is not None:
            wall = wall or time.monotonic() - started
            break
        if wall is None and done is not None and done():
            wall = time.monotonic() - started
            cpu_done = cpu_of(tree(proc.pid))
        if wall is not None and (drained is None or drained()):
            proc.send_signal(signal.SIGTERM)
            break
        if time.monotonic() - started > timeout:
            proc.kill()
            raise SystemExit(f"{tool} {scenario}: no result within {timeout}s")
        time.sleep(0.05)
    assert wall is not None
    proc.wait(timeout=120)
    if proc.returncode not in (0, -signal.SIGTERM) and done is None:
        print(f"  {tool} exited {proc.returncode}; see {log}", file=sys.stderr)
    end = time.monotonic() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system)
    if drained is None:
        return Result(tool, scenario, wall, cpu, peak, stored(), truth,
                      None if ready is None else wall - ready)
    return Result(tool, scenario, wall, cpu_done or cpu, peak, stored(), truth,
                  None if ready is None else wall - ready, end, cpu)


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


# -- tools -----------------------------------------------------------------------
class Storywatch:
    name = "storywatch"

    def __init__(self, work: Path, urls: list[str]) -> None:
        self.dir = work / "storywatch"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rules").mkdir(exist_ok=True)
        self.db = self.dir / "storywatch.db"
        self.config = self.dir / "storywatch.yaml"
        self.config.write_text(
            f"state_dir: {self.dir}\nrules_dir: {self.dir / 'rules'}\n"
            "metrics: {enabled: false}\nlog: {level: info}\n"
            "polling:\n  concurrency: 64\n  dispatch_interval: 0.05\n"
            "  min_interval: 1h\n  default_interval: 1h\n  timeout: 30\n"
            # One local host serves every feed: the politeness limits meant for real
            # sites would only measure the limits themselves.
            "  host_concurrency: 64\n  host_spacing: 0\n"
            "  allowed_networks: ['127.0.0.0/8']\n")
        opml = self.dir / "feeds.opml"
        body = "".join(f'<outline type="rss" text="f{i}" xmlUrl="{u}"/>'
                       for i, u in enumerate(urls))
        opml.write_text(f"<opml version='2.0'><head/><body>{body}</body></opml>")
        self.cli("db", "upgrade")
        self.cli("feeds", "import", str(opml))
        self.feeds = len(urls)

    def cli(self, *args: str) -> None:
        subprocess.run([str(PYTHON), "-m", "monitor", "-c", str(self.config), *args],
                       check=True, stdout=subprocess.DEVNULL, cwd=self.dir)

    def entries(self) -> int:
        return count(self.db, "SELECT count(*) FROM entries")

    def make_due(self) -> float:
        with sqlite3.connect(self.db) as con:
            con.execute("UPDATE feeds SET next_check_at = '2000-01-01 00:00:00.000000'")
        return time.time()

    def unclustered(self) -> int:
        return count(self.db, "SELECT count(*) FROM entries "
                              "WHERE story_id IS NULL AND tombstone_seen_at IS NULL")

    def run(self, scenario: str, truth: int, settled: Callable[[], bool]) -> Result:
        log = self.dir / f"{self.name}-{scenario}.log"
        rebuilt = False

        def drained() -> bool:
            nonlocal rebuilt
            rebuilt = rebuilt or b"story index rebuilt" in log.read_bytes()
            return rebuilt and self.unclustered() == 0

        return measure(self.name, scenario,
                       [str(PYTHON), "-m", "monitor", "-c", str(self.config), "run"],
                       settled, self.entries, truth, self.dir,
                       ready_line=b"storywatch running", drained=drained)

    def cycle(self, scenario: str, truth: int) -> Result:
        """One warm cycle inside a daemon that is already running, as in production.

        The daemon starts, rebuilds its story index and goes idle; then every feed
        is made due at once, and wall time and CPU (of the process tree) are taken
        until every feed was polled again: start-up and index rebuild are excluded.
        """
        log = self.dir / f"{self.name}-{scenario}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(PYTHON), "-m", "monitor", "-c", str(self.config),
                                     "run"], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 1800
            while b"story stage caught up" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"storywatch {scenario}: did not start; see {log}")
                time.sleep(0.1)
            time.sleep(1.0)
            pids = tree(proc.pid)
            cpu0, started = cpu_of(pids), self.make_due()
            t0, peak = time.monotonic(), Memory()
            while self.checked_since(started) < self.feeds:
                peak = peak.peak(memory_of(pids))
                time.sleep(0.02)
            wall, cpu = time.monotonic() - t0, cpu_of(tree(proc.pid)) - cpu0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        return Result(self.name, scenario, wall, cpu, peak, self.entries(), truth, wall)

    def checked_since(self, since: float) -> int:
        stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return count(self.db, f"SELECT count(*) FROM feeds WHERE last_checked_at >= '{stamp}'")


class Newsboat:
    name = "newsboat"

    def __init__(self, work: Path, urls: list[str]) -> None:
        self.dir = work / "newsboat"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "urls").write_text("\n".join(urls) + "\n")
        (self.dir / "config").write_text("reload-threads 16\nmax-items 0\n"
                                         "show-read-feeds yes\ncleanup-on-quit no\n")
        self.db = self.dir / "cache.db"

    def entries(self) -> int:
        return count(self.db, "SELECT count(*) FROM rss_item")

    def run(self, scenario: str, truth: int) -> Result:
        return measure(self.name, scenario,
                       ["newsboat", "-x", "reload", "-u", str(self.dir / "urls"),
                        "-c", str(self.db), "-C", str(self.dir / "config")],
                       None, self.entries, truth, self.dir, env={"HOME": str(self.dir)})


class Feed2exec:
    name = "feed2exec"

    def __init__(self, work: Path, urls: list[str]) -> None:
        self.dir = work / "feed2exec"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ini = self.dir / "feed2exec.ini"
        self.ini.write_text("".join(f"[f{i}]\nurl = {u}\noutput = feed2exec.plugins.null\n\n"
                                    for i, u in enumerate(urls)))
        self.db = self.dir / "feed2exec.db"

    def entries(self) -> int:
        return count(self.db, "SELECT count(*) FROM feedcache")

    def run(self, scenario: str, truth: int) -> Result:
        return measure(self.name, scenario,
                       ["feed2exec", "--config", str(self.ini), "--database", str(self.db),
                        "fetch", "--parallel"],
                       None, self.entries, truth, self.dir, env={"HOME": str(self.dir)})


class HttpxFloor:
    """A bare httpx client fetching every feed (bench/httpx_floor.py): Storywatch's floor."""

    name = "httpx"

    def __init__(self, work: Path, urls: list[str]) -> None:
        self.dir = work / "httpx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.urls = self.dir / "urls"
        self.urls.write_text("\n".join(urls) + "\n")
        self.state = self.dir / "state.json"

    def entries(self) -> int:
        if not self.state.exists():
            return 0
        return sum(items for _, _, items in json.loads(self.state.read_text()).values())

    def run(self, scenario: str, truth: int) -> Result:
        return measure(self.name, scenario,
                       [str(PYTHON), str(ROOT / "bench" / "httpx_floor.py"), str(self.urls),
                        str(self.state), "64"],
                       None, self.entries, truth, self.dir)


# -- driver ----------------------------------------------------------------------
def ensure_packages() -> None:
    missing = [pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True,
                       stdout=subprocess.DEVNULL)


def show(r: Result, peers: dict[str, Result]) -> None:
    ok = "==" if r.stored == r.truth else "!="
    ratios = "  ".join(f"{p.tool}/sw wall {p.wall / r.wall:5.1f}x "
                       f"cpu {p.cpu / max(r.cpu, 1e-3):5.1f}x"
                       for p in peers.values() if p.tool != r.tool)
    polling = f"(polling {r.polling:6.2f}s)" if r.polling is not None else " " * 18
    drained = (f"  clustered after {r.drained:7.2f}s (cpu {r.drained_cpu:7.2f}s)"
               if r.drained is not None and r.drained_cpu is not None else "")
    print(f"{r.scenario:7} {r.tool:10} wall {r.wall:7.2f}s {polling}  cpu {r.cpu:7.2f}s  "
          f"rss {r.peak.rss / 2**20:6.0f} MiB pss {r.peak.pss / 2**20:6.0f} MiB  "
          f"entries {r.stored} {ok} {r.truth}{drained}"
          + (f"   {ratios}" if r.tool == "storywatch" and ratios else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=1000, help="feeds in cold/warm (1000)")
    ap.add_argument("--entries", type=int, default=20, help="entries per feed (20)")
    ap.add_argument("--mixed-feeds", type=int, default=10_000,
                    help="feeds in mixed (10000; 0 skips it)")
    ap.add_argument("--mixed-entries", type=int, default=20, help="entries per mixed feed")
    ap.add_argument("--peers", default="newsboat,feed2exec,httpx",
                    help="peers to run on cold/warm (comma list, empty for none); httpx is "
                         "a bare httpx client, the floor of any httpx-based poller")
    ap.add_argument("--mixed-peers", default="newsboat",
                    help="peers to run on mixed too (feed2exec needs ~15 min there)")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    ensure_packages()
    work = Path(tempfile.mkdtemp(prefix="storywatch-bench-"))
    os.chmod(work, 0o755)
    root = work / "www"
    base = f"http://127.0.0.1:{args.port}"
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, work dir {work}", flush=True)
    cold = make_cold(root, base, args.feeds, args.entries)
    nginx = start_nginx(work, root, args.port)
    try:
        results: dict[str, dict[str, Result]] = {"cold": {}, "warm": {}, "mixed": {}}
        sw = Storywatch(work / "cold", cold.urls)
        t0 = sw.make_due()
        results["cold"]["storywatch"] = sw.run("cold", cold.truth,
                                               lambda: sw.entries() >= cold.truth)
        t0 = sw.make_due()
        results["warm"]["storywatch"] = sw.run("warm", cold.truth,
                                               lambda: sw.checked_since(t0) >= sw.feeds)
        results["warm-in"] = {"storywatch": sw.cycle("warm-in", cold.truth)}
        peers = {"newsboat": Newsboat, "feed2exec": Feed2exec, "httpx": HttpxFloor}
        for name in filter(None, args.peers.split(",")):
            peer = peers[name](work / "cold", cold.urls)
            results["cold"][name] = peer.run("cold", cold.truth)
            results["warm"][name] = peer.run("warm", cold.truth)
        for scenario in ("cold", "warm"):
            for r in results[scenario].values():
                show(r, results[scenario])
        show(results["warm-in"]["storywatch"], results["warm"])

        if args.mixed_feeds <= 0:
            return 0
        mixed, change = make_mixed(root, base, args.mixed_feeds, args.mixed_entries)
        msw = Storywatch(work / "mixed", mixed.urls)
        msw.make_due()
        prime = msw.run("prime", mixed.truth, lambda: msw.entries() >= mixed.truth)
        show(prime, {})
        mpeers = [peers[n](work / "mixed", mixed.urls) for n in
                  filter(None, args.mixed_peers.split(","))]
        for p in mpeers:
            show(p.run("prime", mixed.truth), {})
        added = change()
        t0 = msw.make_due()
        results["mixed"]["storywatch"] = msw.run(
            "mixed", mixed.truth + added, lambda: msw.checked_since(t0) >= msw.feeds)
        for p in mpeers:
            results["mixed"][p.name] = p.run("mixed", mixed.truth + added)
        for r in results["mixed"].values():
            show(r, results["mixed"])
    finally:
        nginx.terminate()
        nginx.wait(10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
