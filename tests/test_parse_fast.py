"""The fast XML path gives exactly what feedparser gives, or declines."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.demo.render import Item, atom, rss
from monitor.feeds import fastxml
from monitor.feeds.parse import FeedParseError, ParsedFeed, _defuse, _parse_with_feedparser, parse
from tests import test_formats_hostile as hostile

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"


def fast_or_none(body: bytes) -> object:
    return fastxml.read(_defuse(body))


def assert_faithful(body: bytes, must_take: bool = False) -> None:
    """The fast path's answer equals feedparser's whenever it answers."""
    fast = fast_or_none(body)
    if must_take:
        assert fast is not None, "the fast path declined a plain feed"
    if fast is not None:
        assert fast == _parse_with_feedparser(_defuse(body))


def bench_feed(tmp_path: Path) -> bytes:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import poll
    finally:
        sys.path.remove(str(ROOT / "bench"))
    poll.write_feed(tmp_path / "f.xml", 7, 0, 20)
    return (tmp_path / "f.xml").read_bytes()


DEMO_ITEMS = [Item("g-1", "Caf\u00e9 & <b>bar</b>", "One para.\n\nTwo & <three>",
                   "https://a.example/1?a=1&b=2", datetime(2026, 1, 1, 10, tzinfo=UTC)),
              Item("g-2", "Plain", "Text", None, None)]


BLOG_RSS = """<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
 xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:wfw="http://wellformedweb.org/commentAPI/" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:atom="http://www.w3.org/2005/Atom" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"
 xmlns:slash="http://purl.org/rss/1.0/modules/slash/" xmlns:media="http://search.yahoo.com/mrss/">
<channel><title>A blog &#8211; news</title>
<atom:link href="https://b.example/feed/" rel="self" type="application/rss+xml" />
<link>https://b.example</link><description>Notes</description>
<lastBuildDate>Fri, 20 Nov 2026 09:12:44 +0000</lastBuildDate><language>en-US</language>
<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>1</sy:updateFrequency>
<generator>https://wordpress.org/?v=6.4</generator>
<image><url>https://b.example/i.png</url><title>A blog</title><link>https://b.example</link>
<width>32</width><height>32</height></image>
<item><title>Cafés &amp; bars: &#8220;quoted&#8221;</title>
<link>https://b.example/2026/11/cafes/?utm_source=rss&amp;utm_medium=rss</link>
<comments>https://b.example/2026/11/cafes/#respond</comments>
<dc:creator><![CDATA[Ann Example]]></dc:creator><pubDate>Fri, 20 Nov 2026 09:12:44 +0000</pubDate>
<category><![CDATA[News]]></category><category><![CDATA[Cafés]]></category>
<guid isPermaLink="false">https://b.example/?p=123</guid>
<description><![CDATA[<p>Short &hellip; <a href="https://b.example/x">more</a></p>]]></description>
<content:encoded><![CDATA[<p>Long <b>text</b><script>x()</script> &amp; more.</p>
<img src="https://b.example/i.jpg" onerror="x()" />]]></content:encoded>
<wfw:commentRss>https://b.example/2026/11/cafes/feed/</wfw:commentRss>
<slash:comments>3</slash:comments>
<media:thumbnail url="https://b.example/t.jpg" width="240" height="135"/></item>
</channel></rss>""".encode()


@pytest.mark.parametrize("body", [BLOG_RSS, hostile.RSS_091, hostile.RSS_092, hostile.RSS_10,
                                  hostile.RSS_20, hostile.ATOM_10,
                                  rss("Demo", "https://d.example/", DEMO_ITEMS),
                                  atom("Demo", "https://d.example/", DEMO_ITEMS)],
                         ids=["blog", "rss0.91", "rss0.92", "rss1.0", "rss2.0", "atom1.0",
                              "demo-rss", "demo-atom"])
def test_fixture_feeds_take_the_fast_path_faithfully(body: bytes) -> None:
    assert_faithful(body, must_take=True)


RDF_HEAD = ("<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#' "
            "xmlns='http://purl.org/rss/1.0/' xmlns:dc='http://purl.org/dc/elements/1.1/' "
            "xml:lang='de'>")


@pytest.mark.parametrize("doc", [
    RDF_HEAD + "<channel><title>C</title><dc:language>fr</dc:language><item><title>in</title>"
    "</item></channel><item><title>T</title></item></rdf:RDF>",
    RDF_HEAD + "<item><title>first</title></item><channel><title>dropped</title></channel>"
    "</rdf:RDF>",
    RDF_HEAD + "<image><title>img</title></image><channel><title>dropped</title></channel>"
    "</rdf:RDF>",
    "<rss version='2.0' xml:lang='en'><channel><image><title>i</title><url>u</url></image>"
    "<title>T</title><item><title>x</title></item></channel></rss>",
    "<feed xmlns='http://www.w3.org/2005/Atom'><entry><title>e</title></entry><title>late</title>"
    "</feed>",
], ids=["rdf-items-in-channel", "rdf-title-after-item", "rdf-title-after-image",
        "rss-image-first", "atom-title-last"])
def test_feedparser_title_and_language_quirks_are_kept(doc: str) -> None:
    """feedparser drops a feed title met after a title at the same depth, ignores
    xml:lang on rdf:RDF, and so on: the fast path does the same."""
    assert_faithful(doc.encode(), must_take=True)


def test_bench_feed_takes_the_fast_path_faithfully(tmp_path: Path) -> None:
    body = bench_feed(tmp_path)
    assert_faithful(body, must_take=True)
    assert len(parse(body).entries) == 20


def test_seed_reports_as_feeds_are_faithful() -> None:
    if not SEEDS.is_dir():
        pytest.skip(f"seed reports not found at {SEEDS}")
    texts = [p.read_text() for p in sorted(SEEDS.glob("*.txt"))]
    items = [Item(f"s{i}", t.splitlines()[0], t, f"https://o{i}.example/n?utm_source=rss",
                  datetime(2025, 3, 19, i, tzinfo=UTC)) for i, t in enumerate(texts)]
    for write in (rss, atom):
        body = write("Seeds", "https://s.example/", items)
        assert_faithful(body, must_take=True)


@pytest.mark.parametrize("body", [
    hostile.ATOM_03, hostile.QUADRATIC, hostile.NESTED,
    b"<rss version='2.0'><channel><title>x &nbsp; y</title></channel></rss>",
    b"<rss version='2.0'><channel><title>x</title><item><title>a</title></channel></rss>",
    b"<?xml version='1.0' encoding='windows-1251'?><rss version='2.0'><channel></channel></rss>",
    "<rss version='2.0'><channel><title>Caf\u00e9</title></channel></rss>".encode("latin-1"),
    b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "x">'
    b"<rss version='0.91'><channel><title>t</title></channel></rss>",
    b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><content type='xhtml'>"
    b"<div xmlns='http://www.w3.org/1999/xhtml'>x</div></content></entry></feed>",
    b"<feed xmlns='http://www.w3.org/2005/Atom' xml:base='https://a.example/'><entry>"
    b"<link href='/1'/></entry></feed>",
    b"<html><body>Hello</body></html>",
], ids=["atom0.3", "quadratic", "nested", "undefined-entity", "malformed", "legacy-charset",
        "wrong-charset", "doctype", "xhtml", "xml-base", "html"])
def test_declines_what_it_cannot_map(body: bytes) -> None:
    assert fast_or_none(body) is None


def test_an_author_feedparser_chews_on_is_read_at_once() -> None:
    """feedparser's e-mail regex is quadratic here, yet it does not change the author."""
    feed = fast_or_none(hostile.QUADRATIC + b"</rss>")
    assert isinstance(feed, ParsedFeed) and feed.entries[0].author == "a" * 40_000


def test_billion_laughs_never_reaches_the_fast_path_expanded() -> None:
    levels = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 6))
    body = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY l0 "lol">{levels}]>'
            '<rss version="2.0"><channel><title>&l5;</title></channel></rss>').encode()
    assert fast_or_none(body) is None
    try:
        title = parse(body).title
    except FeedParseError:
        return
    assert len(title or "") < 1000


# -- generated documents ---------------------------------------------------------------
TEXTS = st.lists(st.sampled_from([
    "plain words", "AT&amp;T", "&lt;b&gt;bold&lt;/b&gt; text", "<![CDATA[<p>x</p> & y]]>",
    "&amp;amp;", "Caf\u00e9", "\u00c3\u00a9t\u00c3\u00a9", "\u0085\u0093quoted\u0094",
    "a&#13;\nb", "  spaced  ", "", "&amp;nbsp;", "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&lt;a href='javascript:x'&gt;y&lt;/a&gt;", "\u00a0nb\u00a0", "&#x2019;", " > ",
    "http://x.example///y?a=1&amp;b=2", "&lt;p&gt;para&lt;/p&gt;", "\u65e5\u672c",
    "user@example.com (Ann)", "&lt;unknowntag&gt;x&lt;/unknowntag&gt;", "&amp;copy;",
    "&lt;br/&gt;", "<!-- c -->", "\t\n", "&#133;&#x9d;", "x]]&gt;y", "&#xe9;",
    "&lt;img src=x onerror=y&gt;", "&lt;p&gt;unclosed",
]), max_size=4).map("".join)
DATES = st.sampled_from(["Thu, 01 Jan 2026 10:00:00 GMT", "2026-01-01T10:00:00Z",
                         "2026-01-01T10:00:00+02:00", "garbage", "", "2026-13-45",
                         " Mon, 02 Feb 2026 08:00:00 +0100 ", "2026-01-01"])


def el(tag: str, text: str, attrs: str = "") -> str:
    return f"<{tag}{attrs}>{text}</{tag}>"


RSS_ITEM_PARTS = st.one_of(
    TEXTS.map(lambda t: el("title", t)), TEXTS.map(lambda t: el("dc:title", t)),
    TEXTS.map(lambda t: el("link", t)), TEXTS.map(lambda t: el("description", t)),
    TEXTS.map(lambda t: el("content:encoded", t)), TEXTS.map(lambda t: el("author", t)),
    TEXTS.map(lambda t: el("dc:creator", t)), TEXTS.map(lambda t: el("language", t)),
    st.tuples(TEXTS, st.sampled_from(["", " isPermaLink='false'", " isPermaLink='true'",
                                      " isPermaLink='True'"])).map(lambda p: el("guid", *p)),
    st.tuples(TEXTS, st.sampled_from(["", " domain='d'", " domain=''"])).map(
        lambda p: el("category", *p)),
    TEXTS.map(lambda t: el("dc:subject", t)),
    DATES.map(lambda d: el("pubDate", d)), DATES.map(lambda d: el("dc:date", d)),
    st.just("<comments>c</comments>"), st.just("<enclosure url='u' type='audio/mpeg'/>"),
    st.just("<source url='https://s.example/'>Src</source>"), st.just("<foo>bar</foo>"),
    st.just("<media:title>m</media:title>"),
    st.sampled_from(["<media:thumbnail url='https://i.example/t.jpg' width='240'/>",
                     "<media:content url='https://i.example/v.mp4' medium='video'/>",
                     "<media:thumbnail url=' '>text</media:thumbnail>",
                     "<media:content url='u'><media:title>t</media:title></media:content>",
                     "<media:content url='u' lang='de'/>"]),
    st.just("<dc2:creator xmlns:dc2='http://purl.org/dc/elements/1.1/'>x</dc2:creator>"),
    st.sampled_from(["<Title>T</Title>", "<title xml:lang='de'>x</title>",
                     "<description type='text/plain'>x</description>", "<link base='/b'>l</link>",
                     "<guid ISPERMALINK='false'>g</guid>", "<title><b>x</b></title>"]),
)
RSS_CHANNEL_PARTS = st.one_of(
    TEXTS.map(lambda t: el("title", t)), TEXTS.map(lambda t: el("language", t)),
    st.sampled_from(["60", " 15 ", "x", "\u00b2", ""]).map(lambda t: el("ttl", t)),
    TEXTS.map(lambda t: el("description", t)), st.just("<link>https://c.example/</link>"),
    TEXTS.map(lambda t: f"<image><url>u</url><title>{t}</title><link>l</link></image>"),
    st.just("<atom:link href='https://c.example/f' rel='self' type='application/rss+xml'/>"),
)
NS = ("xmlns:dc='http://purl.org/dc/elements/1.1/' "
      "xmlns:content='http://purl.org/rss/1.0/modules/content/' "
      "xmlns:media='http://search.yahoo.com/mrss/' xmlns:atom='http://www.w3.org/2005/Atom'")


@st.composite
def rss_docs(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(st.lists(RSS_ITEM_PARTS, max_size=8), max_size=3))
    channel = draw(st.lists(RSS_CHANNEL_PARTS, max_size=4))
    at = draw(st.integers(0, len(channel)))
    body = "".join(channel[:at]) + "".join(el("item", "".join(i)) for i in items) + "".join(
        channel[at:])
    lang = draw(st.sampled_from(["", " xml:lang='en_GB'"]))
    decl = draw(st.sampled_from(["", "<?xml version='1.0' encoding='utf-8'?>", "\ufeff"]))
    return f"{decl}<rss version='2.0' {NS}{lang}><channel>{body}</channel></rss>".encode()


@st.composite
def rdf_docs(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(st.lists(RSS_ITEM_PARTS, max_size=6), max_size=3))
    abouts = draw(st.lists(st.sampled_from(["", " rdf:about='https://r.example/1'",
                                            " rdf:about=' x '"]), min_size=len(items),
                           max_size=len(items)))
    title = draw(TEXTS)
    channel = (f"<channel rdf:about='https://r.example/'>{el('title', title)}"
               "<link>https://r.example/</link><items><rdf:Seq><rdf:li rdf:resource='x'/>"
               "</rdf:Seq></items></channel>")
    parts = [el("item", "".join(i), a) for i, a in zip(items, abouts, strict=True)]
    at = draw(st.integers(0, len(parts)))
    body = "".join(parts[:at]) + channel + "".join(parts[at:])
    lang = draw(st.sampled_from(["", " xml:lang='en'"]))
    return (f"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#' "
            f"xmlns='http://purl.org/rss/1.0/' {NS.replace('xmlns:atom', 'xmlns:a')}{lang}>"
            f"{body}</rdf:RDF>").encode()


TYPES = st.sampled_from(["", " type='text'", " type='html'", " type='HTML'", " type='text/html'",
                         " type='xhtml'"])
ATOM_ENTRY_PARTS = st.one_of(
    st.tuples(TEXTS, TYPES).map(lambda p: el("title", *p)),
    st.tuples(TEXTS, TYPES).map(lambda p: el("summary", *p)),
    st.tuples(TEXTS, TYPES).map(lambda p: el("content", *p)),
    TEXTS.map(lambda t: el("id", t)),
    st.sampled_from(["<link href='https://a.example/1'/>", "<link rel='self' href='s'/>",
                     "<link rel='alternate' type='text/html' href='https://a.example/2'/>",
                     "<link rel='enclosure' href='e'/>", "<link href=''/>",
                     "<link rel='alternate' type='application/pdf' href='p'/>"]),
    st.tuples(TEXTS, TEXTS).map(lambda p: f"<author><name>{p[0]}</name>"
                                          f"<email>{p[1]}</email></author>"),
    TEXTS.map(lambda t: f"<author><name>{t}</name><uri>u</uri></author>"),
    st.sampled_from(["<category term='t1'/>", "<category term='t1' scheme='s'/>",
                     "<category scheme='s'/>", "<category label='L'/>",
                     "<category term='t2'>x</category>"]),
    DATES.map(lambda d: el("published", d)), DATES.map(lambda d: el("updated", d)),
    st.just("<dc:creator>dc</dc:creator>"),
)


@st.composite
def atom_docs(draw: st.DrawFn) -> bytes:
    entries = draw(st.lists(st.lists(ATOM_ENTRY_PARTS, max_size=8), max_size=3))
    title = el("title", draw(TEXTS), draw(TYPES))
    parts = [el("entry", "".join(e)) for e in entries]
    at = draw(st.integers(0, len(parts)))
    body = "".join(parts[:at]) + title + "<id>urn:f</id>" + "".join(parts[at:])
    lang = draw(st.sampled_from(["", " xml:lang='fr'", " xml:lang=''"]))
    return (f"<feed xmlns='http://www.w3.org/2005/Atom' "
            f"xmlns:dc='http://purl.org/dc/elements/1.1/'{lang}>{body}</feed>").encode()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(rss_docs(), rdf_docs(), atom_docs()))
def test_generated_feeds_match_feedparser(body: bytes) -> None:
    assert_faithful(body)


def test_generated_plain_feeds_mostly_take_the_fast_path() -> None:
    """The strategies above are not all declined (else the property test proves nothing)."""
    taken = 0

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.one_of(rss_docs(), rdf_docs(), atom_docs()))
    def count(body: bytes) -> None:
        nonlocal taken
        taken += fast_or_none(body) is not None

    count()
    assert taken >= 40
