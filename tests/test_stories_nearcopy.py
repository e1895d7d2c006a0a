"""Near copies: syndicated text with small edits joins its original as `near_copy`."""

from __future__ import annotations

from datetime import timedelta

from monitor.stories import nearcopy
from monitor.stories.cluster import Doc, StoryIndex
from monitor.stories.features import analyse
from tests.story_fixtures import PARAPHRASES, minutes

WIRE = PARAPHRASES[0]


def edited(text: str) -> str:
    """A local edit: one word swapped, the last sentence trimmed."""
    words = text.split()
    words[5] = "Tuesday,"
    return " ".join(words[: -6])


def signature(title: str, text: str) -> int:
    found = analyse(title, text)[1]
    assert found is not None
    return found


def test_small_edits_stay_within_the_copy_distance() -> None:
    _, _, _, title, text = WIRE
    original = signature(title, text)
    copy = signature("Marrowick flooded as dam breaks", edited(text))
    assert nearcopy.distance(original, copy) <= nearcopy.MAX_DISTANCE


def test_paraphrases_are_not_copies() -> None:
    dam = [r for r in PARAPHRASES if r[0] == "dam"]
    first = signature(dam[0][3], dam[0][4])
    for other in dam[1:]:
        assert nearcopy.distance(first, signature(other[3], other[4])) > nearcopy.MAX_DISTANCE


def test_too_short_for_a_signature() -> None:
    assert analyse("Breaking", "Dam fails in Marrowick")[1] is None


def test_index_reports_the_copy_with_its_distance() -> None:
    _, outlet, at, title, text = WIRE
    index = StoryIndex(timedelta(hours=72))
    original = Doc(1, outlet, title, text, minutes(at), "wire-1")
    feats = index.features(original)
    index.observe(feats)
    index.add(feats, 7)
    copy = Doc(2, "Local Gazette", "Marrowick flooded as dam breaks", edited(text),
               minutes(at + 30), "local-9")
    decision = index.assign(index.features(copy))
    assert decision.story_id == 7 and decision.reason == "near_copy"
    assert decision.detail["entry"] == 1
    assert decision.detail["bits_differing"] <= nearcopy.MAX_DISTANCE


def test_the_closest_copy_among_the_candidates_wins() -> None:
    """Story 7 holds an edited copy, story 8 the original under the copy's new headline,
    so story 8 ranks first by terms; a second copy of the edit, under that headline
    too, joins story 7, whose body it repeats (SimHash reads the body alone)."""
    _, outlet, at, title, text = WIRE
    headline = "Marrowick flooded as dam breaks"
    index = StoryIndex(timedelta(hours=72))
    for entry_id, story, heading, body in ((1, 7, title, edited(text)), (2, 8, headline, text)):
        feats = index.features(Doc(entry_id, outlet, heading, body, minutes(at), f"w-{entry_id}"))
        index.observe(feats)
        index.add(feats, story)
    again = Doc(3, "Local Gazette", headline, edited(text), minutes(at + 30), "local-3")
    decision = index.assign(index.features(again))
    assert (decision.story_id, decision.reason) == (7, "near_copy")
    assert decision.detail == {"entry": 1, "bits_differing": 0}
