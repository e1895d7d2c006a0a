"""Canonical URLs: real-world variants of one article link compare equal."""

from __future__ import annotations

import pytest

from monitor.stories.normalise import canonical_url

ARTICLE = "https://news.example.com/world/2025/03/19/energy-strikes"

VARIANTS = [
    "https://news.example.com/world/2025/03/19/energy-strikes",
    "http://news.example.com/world/2025/03/19/energy-strikes",
    "https://news.example.com/world/2025/03/19/energy-strikes/",
    "https://NEWS.example.com/world/2025/03/19/energy-strikes",
    "https://news.example.com:443/world/2025/03/19/energy-strikes",
    "http://news.example.com:80/world/2025/03/19/energy-strikes",
    "https://news.example.com/world/2025/03/19/energy-strikes#comments",
    "https://news.example.com/world/2025/03/19/energy-strikes?utm_source=rss&utm_medium=feed",
    "https://news.example.com/world/2025/03/19/energy-strikes?utm_campaign=x&fbclid=IwAR0abc",
    "https://news.example.com/world/2025/03/19/energy-strikes?gclid=abc&mc_cid=1&mc_eid=2",
    "https://news.example.com/world/2025/03/19/energy-strikes?ocid=socialflow_twitter",
    "https://news.example.com/world/2025/03/19/energy-strikes?cmpid=rss&at_medium=RSS",
    "https://news.example.com/world/2025/03/19/energy-strikes/amp",
    "https://news.example.com/world/2025/03/19/energy-strikes/amp/",
    "https://news.example.com/amp/world/2025/03/19/energy-strikes",
    "https://amp.news.example.com/world/2025/03/19/energy-strikes",
    "https://m.news.example.com/world/2025/03/19/energy-strikes",
    "https://mobile.news.example.com/world/2025/03/19/energy-strikes",
    "https://www.news.example.com/world/2025/03/19/energy-strikes",
    "https://news.example.com//world//2025/03/19/energy-strikes",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_share_the_canonical_url(variant: str) -> None:
    assert canonical_url(variant) == canonical_url(ARTICLE)


@pytest.mark.parametrize(("a", "b"), [
    (ARTICLE, "https://news.example.com/world/2025/03/19/other-story"),
    (ARTICLE, "https://news.example.com:8443/world/2025/03/19/energy-strikes"),
    ("https://news.example.com/article?id=1", "https://news.example.com/article?id=2"),
    ("https://news.example.com/", "https://other.example.com/"),
])
def test_different_articles_stay_different(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


def test_meaningful_query_is_kept_in_a_stable_order() -> None:
    assert (canonical_url("https://news.example.com/a?page=2&id=7&utm_source=x")
            == canonical_url("https://news.example.com/a?id=7&page=2"))


@pytest.mark.parametrize("value", [None, "", "not a url", "mailto:desk@example.com"])
def test_odd_links_do_not_crash(value: str | None) -> None:
    canonical_url(value)
