"""Story clustering on paraphrases the project wrote: same event joins, neighbours stay apart."""

from __future__ import annotations

import os
import pickle
import pickletools
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import timedelta

from monitor.stories import cluster
from monitor.stories.cluster import Assignment, Doc, StoryIndex
from monitor.stories.normalise import canonical_url, content_hash
from tests.story_fixtures import BACKGROUND, NEIGHBOURS, PARAPHRASES, Report, minutes

WINDOW = timedelta(hours=72)


def make_doc(entry_id: int, report: Report, shift: timedelta = timedelta()) -> Doc:
    event, outlet, at, title, text = report
    url = f"https://{outlet.lower().replace(' ', '-')}.example/{event}/{entry_id}"
    return Doc(entry_id, outlet, title, text, minutes(at) + shift, url, canonical_url(url),
               content_hash(title, text))


def stream(index: StoryIndex, docs: list[Doc]) -> dict[int, tuple[int, Assignment]]:
    """Cluster docs in time order, as the ingest does; entry id → (story, decision)."""
    out = {}
    for doc in sorted(docs, key=lambda d: (d.at, d.entry_id)):
        feats = index.features(doc)
        decision = index.assign(feats)
        story = decision.story_id if decision.story_id is not None else 1000 + doc.entry_id
        index.observe(feats)
        index.add(feats, story)
        out[doc.entry_id] = (story, decision)
    return out


def fixture_docs() -> tuple[list[Report], list[Doc]]:
    reports = BACKGROUND + PARAPHRASES + NEIGHBOURS
    return reports, [make_doc(i, r) for i, r in enumerate(reports)]


def test_paraphrases_of_one_event_form_one_story() -> None:
    reports, docs = fixture_docs()
    result = stream(StoryIndex(WINDOW), docs)
    for event in ("dam", "rates", "fire"):
        stories = {result[i][0] for i, r in enumerate(reports) if r[0] == event}
        assert len(stories) == 1, event


def test_same_topic_different_event_stays_apart() -> None:
    reports, docs = fixture_docs()
    result = stream(StoryIndex(WINDOW), docs)
    for i, report in enumerate(reports):
        if report[0].endswith("-other"):
            _, decision = result[i]
            assert decision.story_id is None, (report[3], decision)


def test_decision_explains_itself() -> None:
    _, docs = fixture_docs()
    result = stream(StoryIndex(WINDOW), docs)
    joined = [d for _, d in result.values() if d.reason == "cluster"]
    assert joined
    for decision in joined:
        assert 0 < decision.similarity <= 1
        assert decision.detail["shared"], decision
        assert "entities" in decision.detail


def test_same_event_outside_the_window_starts_a_new_story() -> None:
    reports = [r for r in PARAPHRASES if r[0] == "dam"]
    index = StoryIndex(WINDOW)
    first = make_doc(1, reports[0])
    late = make_doc(2, reports[1], shift=WINDOW + timedelta(hours=1))
    stream(index, [first])
    index.expire(late.at)
    assert index.open_stories == 0
    assert index.assign(index.features(late)).story_id is None


def test_expiry_bounds_the_state() -> None:
    _, docs = fixture_docs()
    index = StoryIndex(WINDOW)
    stream(index, docs)
    assert index.open_stories > 0 and index.df
    index.expire(max(d.at for d in docs) + WINDOW + timedelta(seconds=1))
    assert index.open_stories == 0
    assert index.docs_seen == 0 and not index.df


def test_exact_duplicates_are_recognised_before_clustering() -> None:
    _, _, at, title, text = PARAPHRASES[0]
    url = "https://valley-courier.example/marrowick-dam"
    index = StoryIndex(WINDOW)
    stream(index, [Doc(1, "Valley Courier", title, text, minutes(at), "guid-1", url,
                       content_hash(title, text))])
    later = minutes(at + 5)
    cases = [
        ("exact_guid", Doc(2, "Aggregator", "Other title", "Other text", later, "guid-1")),
        ("exact_url", Doc(3, "Aggregator", "Other title", "Other text", later, "guid-3",
                          canonical_url(url + "?utm_source=rss#top"))),
        ("exact_content", Doc(4, "Mirror", title, text, later, "guid-4", None,
                               content_hash(title, text))),
    ]
    for reason, doc in cases:
        decision = index.assign(index.features(doc))
        assert (decision.reason, decision.story_id) == (reason, 1001)


def test_rebuilt_state_gives_the_same_assignments() -> None:
    """A restart replays the window (as Ingestor.rebuild_index does) and decides alike."""
    _, docs = fixture_docs()
    docs.sort(key=lambda d: (d.at, d.entry_id))
    head, tail = docs[: len(docs) // 2], docs[len(docs) // 2:]
    running = StoryIndex(WINDOW)
    stories = {i: s for i, (s, _) in stream(running, head).items()}
    rebuilt = StoryIndex(WINDOW)
    for doc in head:
        feats = rebuilt.features(doc)
        rebuilt.observe(feats)
        rebuilt.add(feats, stories[doc.entry_id])
    assert stream(running, tail) == stream(rebuilt, tail)


def test_document_frequencies_follow_a_long_window() -> None:
    """Thousands of documents through a short window: DF and exact keys are those of the window."""
    rng = random.Random(5)
    vocabulary = [f"w{k}rd" for k in range(400)]
    start = minutes(0)
    docs = [Doc(k, "Wire", f"Report {k}", " ".join(rng.choices(vocabulary, k=30)),
                start + timedelta(minutes=k), f"guid-{k}") for k in range(1600)]
    window = timedelta(minutes=300)
    index = StoryIndex(window)
    terms: dict[int, tuple[str, ...]] = {}
    for doc in docs:
        index.expire(doc.at)
        feats = index.features(doc)
        index.observe(feats)
        index.add(feats, index.assign(feats).story_id or doc.entry_id + 10_000)
        terms[doc.entry_id] = feats.terms
    now = docs[-1].at + timedelta(minutes=1)
    index.expire(now)
    live = [d for d in docs if d.at >= now - window]
    assert index.docs_seen == len(live) == 300
    assert index.df == Counter(t for d in live for t in terms[d.entry_id])
    again = [replace(docs[k], entry_id=5000 + k, at=now) for k in (100, 1599)]
    assert [index.assign(index.features(d)).reason for d in again][1] == "exact_guid"
    assert index.assign(index.features(again[0])).reason != "exact_guid"


def test_state_moves_to_another_process() -> None:
    """The index is plain data: pickled here, it recognises the same duplicates elsewhere."""
    _, docs = fixture_docs()
    index = StoryIndex(WINDOW)
    stream(index, docs)
    first = docs[0]
    copy = replace(first, entry_id=999, title="Other title", text="Other text")
    script = ("import pickle, sys; index, doc = pickle.load(sys.stdin.buffer); "
              "print(index.assign(index.features(doc)).reason)")
    found = subprocess.run([sys.executable, "-c", script], input=pickle.dumps((index, copy)),
                           capture_output=True, check=True, env={**os.environ,
                                                                 "PYTHONHASHSEED": "12345"})
    assert found.stdout.decode().strip() == index.assign(index.features(copy)).reason
    assert found.stdout.decode().strip() == "exact_guid"


def _random_stream(n: int) -> tuple[StoryIndex, list[Doc]]:
    """An index after `n` random documents in a short window, and `n // 4` more documents."""
    rng = random.Random(n)
    vocabulary = [f"w{k}rd" for k in range(400)]
    docs = [Doc(k, "Wire", f"Report {k}", " ".join(rng.choices(vocabulary, k=30)),
                minutes(k), f"guid-{k}") for k in range(n + n // 4)]
    index = StoryIndex(timedelta(minutes=300))
    _decisions(index, docs[:n])
    return index, docs[n:]


def _decisions(index: StoryIndex, docs: list[Doc]) -> list[Assignment]:
    """Expire, decide and add each document in turn, as the story stage does."""
    out = []
    for doc in docs:
        index.expire(doc.at)
        out.append(_place(index, index.features(doc)))
    return out


def _place(index: StoryIndex, feats: cluster.Features) -> Assignment:
    """Decide, count and add one document whose features are made."""
    decision = index.assign(feats)
    index.observe(feats)
    index.add(feats, decision.story_id or feats.doc.entry_id + 10_000)
    return decision


def test_postings_name_the_open_stories_under_their_top_terms() -> None:
    """Through expiry and the reuse of closed stories' slots, each open story is posted
    under its top terms with its weights, and nothing else is posted."""
    index, more = _random_stream(1600)
    _decisions(index, more)
    stories = index._stories
    assert stories._free and len(stories) + len(stories._free) == len(stories.story_id)
    expected = sorted((i, cluster._posted(slot, w)) for slot in stories.order.values()
                      for i, w in zip(*(c[:cluster.INDEX_TERMS] for c in stories.centroid(slot)),
                                      strict=True))
    assert sorted((i, p) for i, posting in index._postings.items() for p in posting) == expected


def test_a_pickled_index_is_the_same_index() -> None:
    """The snapshot's columns give back every story, posting, key and term id as they were."""
    index, more = _random_stream(1200)
    copy = pickle.loads(pickle.dumps(index, protocol=5))
    assert copy._ids == index._ids  # a lookup table: its order means nothing
    assert list(copy._exact.items()) == list(index._exact.items())
    assert copy._stories == index._stories  # every open story's row, in the order of expiry
    for name in ("_terms", "_df", "_held", "_free", "_postings"):
        assert getattr(copy, name) == getattr(index, name), name
        assert list(getattr(copy, name)) == list(getattr(index, name)), name  # same order
    for log in ("_seen", "_members"):
        assert [getattr(getattr(copy, log), f) for f in cluster._Log.__slots__] == [
            getattr(getattr(index, log), f) for f in cluster._Log.__slots__]
    assert _decisions(copy, more) == _decisions(index, more)


def test_a_pickled_index_holds_as_many_objects_whatever_its_size() -> None:
    """No object per story: unpickling one per story would hold a copy of each until the end."""
    def constructed(index: StoryIndex) -> int:
        ops = pickletools.genops(pickle.dumps(index, protocol=5))
        return sum(op.name in ("REDUCE", "NEWOBJ", "BUILD") for op, _, _ in ops)

    small, _ = _random_stream(20)
    large, _ = _random_stream(1600)
    assert large.open_stories > 4 * small.open_stories
    assert constructed(large) == constructed(small)


def test_features_use_their_term_ids_only_while_they_hold() -> None:
    """Features carry their terms' ids; once the index gave or freed ids since, it
    looks them up again, and decides and counts as if they carried none."""
    index, more = _random_stream(1200)
    stale = 0
    for doc, other in zip(more[::2], more[1::2], strict=False):
        index.expire(doc.at)
        oldest = index._members.record(index._members.first + index._members.head)[0]
        # The document shares a term with the oldest one only; in between, that one
        # expires, freeing the term's id, which a new term in another document gets.
        doc = replace(doc, title=f"Report {oldest}")
        feats = index.features(doc)
        index.expire(other.at)
        _place(index, index.features(replace(other, title=f"Report {other.entry_id}00",
                                             text=" ".join(reversed(doc.text.split())))))
        stale += feats.ids != tuple(map(index._ids.get, feats.terms))
        twin = pickle.loads(pickle.dumps(index, protocol=5))
        looked_up = replace(feats, ids=tuple(map(twin._ids.get, feats.terms)),
                            vector_ids=tuple(map(twin._ids.get, feats.vector)),
                            epoch=twin._epoch)
        assert _place(index, feats) == _place(twin, looked_up)
        assert index._df == twin._df and index._stories == twin._stories
    assert stale > 10
