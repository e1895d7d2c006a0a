"""Labelled story streams for the stories benchmark: seeds, JSONL files, newsclust.

Every stream is a list of `LabelledDoc` in time order. Data without dates
(newsclust) gets a synthetic, deterministic time line so that streaming
clustering with a realistic window can be measured on it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEEDS = SHARED / "seeds"
NEWSCLUST = SHARED / "newsclust"
DISTRACTORS = REPO / "bench" / "data" / "seed_distractors.jsonl"
SEED_STORY = "seed"

STORIES_PER_DAY = 40
"""Synthetic arrival rate of undated stories: a busy national news desk."""
SPREAD_HOURS = 6.0
"""Undated stories: their articles arrive within this many hours of each other."""
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LabelledDoc:
    doc_id: str
    story_id: str
    title: str
    text: str
    published: datetime
    outlet: str
    url: str | None


def read_seeds(folder: Path = SEEDS) -> list[LabelledDoc]:
    """The five seed reports, arriving an hour apart on 2025-03-19 (morning, UTC)."""
    docs = []
    start = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
    for i, path in enumerate(sorted(folder.glob("*.txt"))):
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln and ln != "spot_img"]
        docs.append(LabelledDoc(path.stem, SEED_STORY, lines[0], "\n".join(lines[1:]),
                                start + timedelta(minutes=50 * i), f"seed-outlet-{i}",
                                f"https://seed-{i}.example/{path.stem}"))
    return docs


def read_jsonl(path: Path) -> list[LabelledDoc]:
    """A labelled JSONL stream; rows without `published` get a synthetic time line."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    synthetic = synthetic_times([(str(r["doc_id"]), str(r["story_id"])) for r in rows])
    docs = [LabelledDoc(
        doc_id=str(r["doc_id"]), story_id=str(r["story_id"]), title=r.get("title") or "",
        text=r.get("text") or "",
        published=(_parse_time(r["published"]) if r.get("published")
                   else synthetic[str(r["doc_id"])]),
        outlet=r.get("outlet") or f"outlet-{str(r['doc_id']).rsplit('-', 1)[-1]}",
        url=r.get("url")) for r in rows]
    return sorted(docs, key=lambda d: (d.published, d.doc_id))


def _parse_time(value: str) -> datetime:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def synthetic_times(ids: list[tuple[str, str]]) -> dict[str, datetime]:
    """Stories in file order at STORIES_PER_DAY; a story's articles within SPREAD_HOURS.

    Seeded by the story id, so the time line is the same on every run and machine.
    """
    order: dict[str, int] = {}
    for _, story in ids:
        order.setdefault(story, len(order))
    gap = 86400.0 / STORIES_PER_DAY
    out = {}
    for doc_id, story in ids:
        rng = random.Random(f"{story}/{doc_id}")
        start = _EPOCH + timedelta(seconds=order[story] * gap)
        out[doc_id] = start + timedelta(hours=rng.uniform(0.0, SPREAD_HOURS))
    return out


def seeds_with_distractors() -> list[LabelledDoc]:
    """Data set (a): the seeds and the project's same-war distractors, in time order."""
    docs = read_seeds() + read_jsonl(DISTRACTORS)
    return sorted(docs, key=lambda d: (d.published, d.doc_id))
