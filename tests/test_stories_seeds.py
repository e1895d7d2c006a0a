"""Acceptance: the five seed reports form one story, and no same-war distractor joins it.

Streams through the production path (`bench.production`), as the benchmark does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SEEDS = SHARED / "seeds"
NEUS_VAL = SHARED / "newsclust" / "neus_val.jsonl"


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed reports not present at {SEEDS}")
def test_seeds_form_one_story_without_distractors() -> None:
    from bench.labelled import SEED_STORY, seeds_with_distractors
    from bench.production import run

    docs = seeds_with_distractors()
    found = run(docs)
    seeds = [d.doc_id for d in docs if d.story_id == SEED_STORY]
    assert len(seeds) == 5
    stories = {found.stories[s] for s in seeds}
    assert len(stories) == 1
    intruders = [d.doc_id for d in docs
                 if d.story_id != SEED_STORY and found.stories[d.doc_id] in stories]
    assert intruders == []
    reasons = {found.decisions[s].reason for s in seeds[1:]}
    assert reasons == {"cluster"}


@pytest.mark.skipif(not NEUS_VAL.is_file(), reason=f"newsclust data not present at {NEUS_VAL}")
def test_newsclust_subset_clusters_well() -> None:
    """A quick guard on the first 300 documents of neus_val; the full figure is in the bench."""
    from bench.labelled import read_jsonl
    from bench.production import run
    from bench.scoring import score

    docs = read_jsonl(NEUS_VAL)[:300]
    found = run(docs)
    result = score({d.doc_id: d.story_id for d in docs}, found.stories)
    assert result.f1 > 0.85
