"""Draw the Grafana dashboard's panels as PNG from a real Prometheus, for docs/img/.

    .venv/bin/pip install -e '.[docs]'
    .venv/bin/python -m bench.render_dashboard [--duration 180] [--out docs/img]

Runs the test workload (outlets that keep publishing, a broken and a gone
feed, a healthy and a failing webhook) under a real `prometheus`, breaks the
healthy webhook for a while halfway through so the alert pipeline has
something to show, then evaluates every panel's queries over the run exactly
as Grafana would and plots one PNG per dashboard row.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from tests.promrun import Prometheus
from tests.servers import Reply
from tests.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "grafana" / "storywatch-dashboard.json"
STEP = 2.0
RATE_INTERVAL = "20s"


def substitute(expr: str, target: str) -> str:
    return (expr.replace("$__rate_interval", RATE_INTERVAL).replace("$job", "storywatch")
            .replace("$instance", target))


def legend(fmt: str, labels: dict[str, str]) -> str:
    if fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in labels.items() if k not in ("job", "instance"))
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def rows() -> list[tuple[str, list[dict[str, Any]]]]:
    """Dashboard rows with their timeseries panels, in order."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":
            out.append((panel["title"], []))
        elif panel["type"] == "timeseries":
            out[-1][1].append(panel)
    return out


def plot_row(prom: Prometheus, title: str, panels: list[dict[str, Any]], target: str,
             start: float, end: float, path: Path) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        for t in panel["targets"]:
            for series in prom.query_range(substitute(t["expr"], target), start, end, STEP):
                xs = [float(v[0]) - start for v in series["values"]]
                ys = [float(v[1]) for v in series["values"]]
                ax.plot(xs, ys, linewidth=1.2, label=legend(t["legendFormat"], series["metric"]))
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("seconds into the run", fontsize=7)
        ax.set_ylabel(unit, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(f"Storywatch dashboard: {title}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds to run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    plt.switch_backend("Agg")  # files only, no display needed
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not installed (apt-get install prometheus)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Workload(Path(tmp))
        prom = Prometheus(binary, Path(tmp) / "prometheus", [work.target])
        try:
            start = time.time()
            time.sleep(args.duration * 0.45)
            work.receiver.routes["/hook"] = Reply(503, b"maintenance")  # an outage...
            time.sleep(args.duration * 0.2)
            work.receiver.routes["/hook"] = Reply(200, b"ok")  # ...and the recovery
            time.sleep(args.duration * 0.35)
            end = time.time()
            for title, panels in rows():
                name = re.sub(r"\W+", "-", title.lower()).strip("-")
                plot_row(prom, title, panels, work.target, start, end,
                         args.out / f"dashboard-{name}.png")
                print(f"wrote {args.out / f'dashboard-{name}.png'}")
        finally:
            prom.close()
            work.close()


if __name__ == "__main__":
    main()
