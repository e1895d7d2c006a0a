"""Read well-formed RSS 0.9x/2.0, RSS 1.0 and Atom 1.0 with expat, as feedparser would.

feedparser spends ~9 ms of CPU on a 20-entry feed, mostly in its pure-Python
SAX handlers. Most feeds are plain, well-formed documents whose meaning needs
none of that machinery, so this module reads them with ElementTree's C parser
and applies feedparser's own rules (its date parser, HTML sanitiser, URI
fix-ups, text clean-ups) to each field, giving exactly the entries feedparser
gives. It only accepts the shapes it maps faithfully: anything else (broken
XML, DOCTYPEs, unknown elements or namespaces, xml:base, XHTML content,
duplicated fields, encodings feedparser would guess) makes `read` return None
and the caller uses feedparser. tests/test_parse_fast.py holds it to that.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, cast

from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import _sanitize_html
from feedparser.urls import _urljoin

from monitor.feeds.model import ParsedFeed, RawEntry, struct_time, ttl_seconds

_ATOM = "http://www.w3.org/2005/Atom"
_RSS10 = "http://purl.org/rss/1.0/"
_RSS090 = "http://my.netscape.com/rdf/simple/0.9/"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_ABOUT = f"{{{_RDF}}}about"
_RESOURCE = f"{{{_RDF}}}resource"
_XML_DECL = re.compile(r"^<\?xml[^>]*?>")
_DECL_ENCODING = re.compile(rb"^<\?.*encoding=['\"](.*?)['\"].*\?>")
_FIRST_TAG = re.compile(rb"<\w")
_LINK_ENTITY = re.compile("&([A-Za-z0-9_]+);")
_MARKUP = re.compile("[<&\r]")
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_TEXT_TYPES = {"text": "text/plain", "plain": "text/plain", "text/plain": "text/plain",
               "html": "text/html", "text/html": "text/html"}
_KNOWN_NS = {uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()}
_VERSION_NS = (_RSS090.lower(), _RSS10.lower(), _ATOM.lower())


class _Decline(Exception):
    """The document holds something this module does not map exactly like feedparser."""


def read(body: bytes) -> ParsedFeed | None:
    """The feed feedparser would make of `body`, or None to leave it to feedparser."""
    data = _utf8_like_feedparser(body)
    if data is None:
        return None
    try:
        root, version_ns = _tree(data)
        if root.tag == "rss":
            return _Rss(root).feed()
        if root.tag == f"{{{_RDF}}}RDF" and version_ns == _RSS10.lower():
            return _Rdf(root).feed()
        if root.tag == f"{{{_ATOM}}}feed" and version_ns == _ATOM.lower():
            return _Atom(root).feed()
    except (_Decline, ET.ParseError):
        pass
    return None


def _utf8_like_feedparser(body: bytes) -> bytes | None:
    """The UTF-8 document feedparser's strict parser would see, when that is certain.

    Only bodies declared (or defaulting to) UTF-8 that decode as such: any other
    declaration, or bytes that need feedparser's encoding guesses (UTF-16/32
    are not valid UTF-8, or hold NULs that expat refuses) go to feedparser. So
    do DOCTYPEs and entity declarations, which feedparser rewrites.
    """
    data = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    declared = _DECL_ENCODING.match(data)
    if declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        return None
    first = _FIRST_TAG.search(data)
    head = data[:first.start()] if first else data
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    new_declaration = "<?xml version='1.0' encoding='utf-8'?>"
    if _XML_DECL.search(text):
        return _XML_DECL.sub(new_declaration, text).encode("utf-8")
    return (new_declaration + "\n" + text).encode("utf-8")


def _tree(data: bytes) -> tuple[ET.Element, str | None]:
    """The root element and the first namespace that sets feedparser's version."""
    parser: ET.XMLPullParser[Any] = ET.XMLPullParser(events=("start-ns", "start"))
    parser.feed(data)
    parser.close()
    root: ET.Element | None = None
    version_ns = None
    events: Any = parser.read_events()
    for _event, value in events:
        if isinstance(value, ET.Element):
            root = root if root is not None else value
            continue
        prefix, uri = cast(tuple[str, str], value)
        lower = uri.lower()
        known = _KNOWN_NS.get(lower)
        if prefix and known and known != prefix:
            raise _Decline("a known namespace under another prefix")
        if "backend.userland.com/rss" in lower:
            raise _Decline("userland namespace")
        if version_ns is None and lower in _VERSION_NS and (lower != _RSS090 or not prefix):
            version_ns = lower
    if root is None:
        raise _Decline("no root")
    return root, version_ns


# -- feedparser's per-field text rules ------------------------------------------------
def _text(el: ET.Element, *, html: bool = False, guess: bool = False, uri: bool = False) -> str:
    """An element's text after feedparser's `pop`: strip, URI fix, HTML guess and
    sanitising, charset fix-ups, in its order."""
    out = (el.text or "").strip()
    if uri and out:
        out = _urljoin("", out)
    if guess and not html and _MARKUP.search(out) and _FeedParserMixin.looks_like_html(out):
        html = True
    if html and _MARKUP.search(out):
        out = _sanitize_html(out, "utf-8", "text/html")
    return _charset_fixups(out)


def _charset_fixups(out: str) -> str:
    """feedparser re-reads latin-1-looking UTF-8 and maps C1 controls to cp1252."""
    if out.isascii():
        return out
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        out = out.encode("iso-8859-1").decode("utf-8")
    return out.translate(_cp1252)


def _once(seen: set[str], kind: str) -> None:
    """Duplicated fields follow feedparser rules we do not copy: leave them to it."""
    if kind in seen:
        raise _Decline(f"more than one {kind}")
    seen.add(kind)


@dataclass
class _Item:
    """One entry as feedparser's dictionary would hold the fields we keep."""

    guid: str | None = None
    link: str | None = None
    id_link: str | None = None
    title: str = ""
    summary: str | None = None
    content: str | None = None
    author: str | None = None
    published: Any = None
    updated: Any = None
    has_published: bool = False
    has_updated: bool = False
    language: str | None = None
    tags: list[list[str | None]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def once(self, kind: str) -> None:
        _once(self.seen, kind)

    def category(self, el: ET.Element, term: str | None, scheme: str | None,
                 label: str | None) -> None:
        """feedparser's `_start_category`/`_end_category`, duplicates and all."""
        if term or scheme or label:
            self._add_tag([term, scheme, label])
        value = _text(el)
        if value and self.tags and not self.tags[-1][0]:
            self.tags[-1][0] = value
        elif value:
            self._add_tag([value, None, None])

    def _add_tag(self, tag: list[str | None]) -> None:
        if tag not in self.tags:
            self.tags.append(tag)

    def date(self, el: ET.Element, published: bool) -> None:
        parsed = _parse_date(_text(_leaf(el)))
        if published:
            self.published, self.has_published = parsed, True
        else:
            self.updated, self.has_updated = parsed, True

    def entry(self, feed_language: str | None) -> RawEntry:
        # feedparser answers `updated_parsed` with `published_parsed` when no update date exists
        updated = self.updated if self.has_updated else self.published
        link = self.link if self.link is not None else self.id_link
        return RawEntry(
            guid=self.guid or None, link=link or None, title=self.title,
            summary=self.summary or None, content=self.content or None,
            author=self.author or None, published=struct_time(self.published),
            updated=struct_time(updated), tags=tuple(t[0] for t in self.tags if t[0]),
            language=self.language or feed_language)


class _Feed:
    """Walks one document in order, keeping the feed-level state of feedparser that matters."""

    def __init__(self, root: ET.Element) -> None:
        self.root = root
        self.title: str | None = None
        self.language: str | None = None
        self.ttl: str | None = None
        self.title_depth = -1
        self.items: list[_Item] = []
        self.seen: set[str] = set()

    def once(self, kind: str) -> None:
        _once(self.seen, kind)

    def root_language(self, attrs: tuple[str, ...]) -> None:
        _attrs(self.root, (*attrs, _XML_LANG))
        lang = self.root.get(_XML_LANG)
        if lang:
            self.language = lang.replace("_", "-")

    def title_at(self, value: str, depth: int) -> bool:
        """Whether feedparser stores a title found at `depth` (a title met earlier and
        no shallower blocks it), remembering this one's depth when it is not empty."""
        stored = not -1 < self.title_depth <= depth
        if value:
            self.title_depth = depth
        return stored

    def feed_title(self, value: str, depth: int) -> None:
        self.once("title")
        if self.title_at(value, depth):
            self.title = value

    def done(self) -> ParsedFeed:
        return ParsedFeed(title=self.title,
                          entries=[item.entry(self.language) for item in self.items],
                          ttl_seconds=ttl_seconds(self.ttl), language=self.language)


def _attrs(el: ET.Element, allowed: tuple[str, ...]) -> ET.Element:
    if el.attrib and any(k not in allowed for k in el.attrib):
        raise _Decline(f"unexpected attributes on {el.tag}")
    return el


def _leaf(el: ET.Element, allowed: tuple[str, ...] = ()) -> ET.Element:
    if len(el):
        raise _Decline(f"{el.tag} has child elements")
    return _attrs(el, allowed)


_SY = "{http://purl.org/rss/1.0/modules/syndication/}"
_DCTERMS = "{http://purl.org/dc/terms/}"
_CHANNEL_NS_IGNORED = {f"{_DC}rights", f"{_DC}publisher", f"{_DC}creator", f"{_DC}date",
                       f"{_SY}updatePeriod", f"{_SY}updateFrequency", f"{_SY}updateBase"}
"""Channel elements feedparser files away without effect on the fields we keep."""
_CHANNEL_RSS_IGNORED = {"link", "description", "generator", "docs", "copyright", "pubDate",
                        "lastBuildDate", "managingEditor", "webMaster", "rating"}
_MEDIA = ("{http://search.yahoo.com/mrss/}", "{http://search.yahoo.com/mrss}")
_MEDIA_ATTRS = ("url", "width", "height", "time", "type", "medium", "fileSize", "duration",
                "isDefault", "expression", "bitrate")
_ITEM_IGNORED = {"{http://wellformedweb.org/commentAPI/}commentRss",
                 "{http://purl.org/rss/1.0/modules/slash/}comments",
                 "{http://rssnamespace.org/feedburner/ext/1.0}origLink",
                 *(f"{m}{local}" for m in _MEDIA for local in ("thumbnail", "content"))}
"""Item elements feedparser files away (media ones as attribute dicts) without effect on
the fields we keep; media:content with children (titles, descriptions) is not one."""
_IMAGE_CHILDREN = ("title", "url", "link", "width", "height", "description")
_LEAF_ATTRS = {"category": ("domain",), "enclosure": ("url", "length", "type"),
               "source": ("url",), f"{{{_ATOM}}}link": ("href", "rel", "type", "title",
                                                     "hreflang", "length"),
               "cloud": ("domain", "port", "path", "registerProcedure", "protocol"),
               **{f"{m}{local}": _MEDIA_ATTRS for m in _MEDIA
                  for local in ("thumbnail", "content")}}


def _item_kinds(ns: str, ignored: set[str]) -> dict[str, str]:
    """Item element -> the feedparser handler family it goes to."""
    kinds = {f"{ns}{local}": kind for local, kind in (
        ("title", "title"), ("link", "link"), ("description", "description"),
        ("author", "author"), ("category", "category"), ("pubDate", "published"),
        ("language", "language"))}
    kinds.update({f"{_DC}title": "title", f"{_DC}description": "description",
                  f"{_CONTENT}encoded": "content", f"{_DC}creator": "author",
                  f"{_DC}author": "author", f"{_DC}subject": "category",
                  f"{_DCTERMS}issued": "published", f"{_DC}date": "updated",
                  f"{_DCTERMS}modified": "updated", f"{_DC}language": "language"})
    kinds.update((tag, "ignored") for tag in ignored)
    return kinds


class _Rss(_Feed):
    """RSS 0.9x/2.0: `<rss><channel>` with the items inside the channel, no namespace."""

    ns = ""
    channel_ignored = _CHANNEL_NS_IGNORED | _CHANNEL_RSS_IGNORED | {"category", "cloud"}
    item_kinds = _item_kinds("", _ITEM_IGNORED | {"comments", "enclosure", "source"}) | {
        "guid": "guid"}

    def feed(self) -> ParsedFeed:
        self.root_language(("version",))
        channels = list(self.root)
        if len(channels) != 1 or channels[0].tag != "channel":
            raise _Decline("rss without exactly one channel")
        self.channel(_attrs(channels[0], ()), 2)
        return self.done()

    def channel(self, channel: ET.Element, depth: int) -> None:
        ns = self.ns
        for el in channel:
            tag = el.tag
            if tag == f"{ns}item":
                self.item(_attrs(el, ()), depth + 1)
            elif tag == f"{ns}title":
                self.feed_title(_text(_leaf(el), guess=True), depth + 1)
            elif tag in (f"{ns}language", f"{_DC}language"):
                self.once("language")
                self.language = _text(_leaf(el))
            elif tag == "ttl":
                self.once("ttl")
                self.ttl = _text(_leaf(el))
            elif tag == f"{ns}image" and len(el):
                self.image(_attrs(el, ()), depth + 1, in_feed=True)
            elif tag in self.channel_ignored or (
                    tag == f"{{{_ATOM}}}link" and "href" in el.attrib):
                _leaf(el, _LEAF_ATTRS.get(tag, ()))
            else:
                self.extra(el)

    def extra(self, el: ET.Element) -> None:
        raise _Decline(f"unmapped element {el.tag}")

    def image(self, el: ET.Element, depth: int, in_feed: bool) -> None:
        self.title_depth = -1
        for child in el:
            if child.tag not in [f"{self.ns}{n}" for n in _IMAGE_CHILDREN]:
                raise _Decline("unmapped image child")
            _leaf(child)
            if child.tag == f"{self.ns}title":
                # outside the channel feedparser does not process the text ("not expecting text")
                self.title_at(_text(child, guess=True) if in_feed else (child.text or "").strip(),
                              depth + 1)

    def item(self, el: ET.Element, depth: int, about: str | None = None) -> None:
        item = _Item(guid=about)
        self.title_depth = -1
        kinds = self.item_kinds
        for child in el:
            tag = child.tag
            kind = kinds.get(tag)
            if kind is None:
                raise _Decline(f"unmapped item element {tag}")
            if kind == "category":
                _leaf(child, ("domain",) if tag == "category" else ())
                item.category(child, None, child.get("domain"), None)
                continue
            if kind == "ignored":
                _leaf(child, _LEAF_ATTRS.get(tag, ()))
                if tag == "source":
                    self.title_depth = -1
                continue
            item.once(kind)
            if kind == "guid":
                self.guid(item, child)
            elif kind in ("published", "updated"):
                item.date(child, published=kind == "published")
            elif kind == "title":
                title = _text(_leaf(child), guess=True)
                item.title = title if self.title_at(title, depth + 1) else item.title
            elif kind == "link":
                link = _text(_leaf(child), uri=True).replace("&amp;", "&")
                item.link = _LINK_ENTITY.sub(r"&\g<1>", link)
            elif kind == "description":
                item.summary = _text(_leaf(child), html=True)
            elif kind == "content":
                item.content = _text(_leaf(child), html=True)
                item.summary = item.summary if item.summary is not None else item.content
            elif kind == "author":
                item.author = _text(_leaf(child))
            else:
                item.language = _text(_leaf(child))
        self.items.append(item)

    @staticmethod
    def guid(item: _Item, el: ET.Element) -> None:
        keys = tuple(k for k in el.attrib if k.lower() == "ispermalink")
        if len(keys) > 1:
            raise _Decline("two isPermaLink attributes")
        permalink = not keys or el.get(keys[0]) == "true"
        item.guid = _text(_leaf(el, keys), uri=permalink)
        if permalink:  # the guid is the link unless a <link> says otherwise
            item.id_link = item.guid


class _Rdf(_Rss):
    """RSS 1.0: `<rdf:RDF>` with channel, image and items side by side."""

    ns = f"{{{_RSS10}}}"
    channel_ignored = _CHANNEL_NS_IGNORED | {f"{ns}link", f"{ns}description"}
    item_kinds = _item_kinds(ns, _ITEM_IGNORED)

    def feed(self) -> ParsedFeed:
        _attrs(self.root, (_XML_LANG,))  # feedparser ignores xml:lang on rdf:RDF
        for el in self.root:
            if el.tag == f"{self.ns}channel":
                self.once("channel")
                self.channel(_attrs(el, (_ABOUT,)), 2)
            elif el.tag == f"{self.ns}item":
                self.item(_attrs(el, (_ABOUT,)), 2, el.get(_ABOUT) or None)
            elif el.tag == f"{self.ns}image":
                self.image(_attrs(el, (_ABOUT,)), 2, in_feed=False)
            else:
                raise _Decline(f"unmapped element {el.tag}")
        return self.done()

    def extra(self, el: ET.Element) -> None:
        """Channel parts of RSS 1.0 that feedparser files away without effect on entries."""
        if el.tag in (f"{self.ns}image", f"{self.ns}textinput"):
            _leaf(el, (_RESOURCE,))
            self.title_depth = -1
        elif el.tag == f"{self.ns}items":
            for seq in _attrs(el, ()):
                if seq.tag != f"{{{_RDF}}}Seq" or seq.attrib:
                    raise _Decline("unmapped items")
                for li in seq:
                    if li.tag != f"{{{_RDF}}}li":
                        raise _Decline("unmapped items")
                    _leaf(li, (_RESOURCE, "resource"))
        else:
            raise _Decline(f"unmapped element {el.tag}")


_A = f"{{{_ATOM}}}"
_ATOM_LINK_ATTRS = _LEAF_ATTRS[f"{_A}link"]
_ATOM_FEED_IGNORED = {f"{_A}{n}" for n in ("id", "updated", "icon", "logo")}


class _Atom(_Feed):
    """Atom 1.0: `<feed>` with entries; text constructs of type text or html only."""

    def feed(self) -> ParsedFeed:
        self.root_language(())
        for el in self.root:
            tag = el.tag
            if tag == f"{_A}entry":
                self.entry(_attrs(el, ()))
            elif tag == f"{_A}title":
                self.feed_title(_text(el, html=_is_html(el)), 2)
            elif tag in (f"{_A}subtitle", f"{_A}rights"):
                _is_html(el)
            elif tag == f"{_A}link":
                self.link(el)
            elif tag in (f"{_A}author", f"{_A}contributor"):
                self.person(el)
            elif tag == f"{_A}category":
                _leaf(el, ("term", "scheme", "label"))
            elif tag == f"{_A}generator":
                _leaf(el, ("uri", "version"))
            elif tag in _ATOM_FEED_IGNORED:
                _leaf(el)
            else:
                raise _Decline(f"unmapped element {tag}")
        return self.done()

    @staticmethod
    def link(el: ET.Element) -> str | None:
        """The href when feedparser takes this link for the alternate HTML page, else None."""
        _leaf(el, _ATOM_LINK_ATTRS)
        if "href" not in el.attrib:
            raise _Decline("link without href")
        rel = el.get("rel", "alternate").lower()
        kind = el.get("type", "application/atom+xml" if rel == "self" else "text/html").lower()
        if rel == "alternate" and _FeedParserMixin.map_content_type(kind) in _HTML_TYPES:
            return str(_urljoin("", el.get("href", "")))
        return None

    @staticmethod
    def person(el: ET.Element) -> str:
        """An author as feedparser names it: "name (email)", name, email or ''."""
        _attrs(el, ())
        if (el.text or "").strip() or any((c.tail or "").strip() for c in el):
            raise _Decline("text inside a person construct")
        parts: dict[str, str] = {}
        for child in el:
            local = child.tag[len(_A):] if child.tag.startswith(_A) else ""
            if local not in ("name", "email", "uri") or local in parts:
                raise _Decline("unmapped person element")
            parts[local] = (_leaf(child).text or "").strip()
        name, email = parts.get("name"), parts.get("email")
        return f"{name} ({email})" if name and email else name or email or ""

    def entry(self, el: ET.Element) -> None:
        item = _Item()
        self.title_depth = -1
        alternates: list[str] = []
        for child in el:
            tag = child.tag
            if tag == f"{_A}link":
                href = self.link(child)
                if href is not None:
                    alternates.append(href)
                continue
            if tag == f"{_A}category":
                _leaf(child, ("term", "scheme", "label"))
                item.category(child, child.get("term"), child.get("scheme"), child.get("label"))
                continue
            item.once(tag)
            if tag == f"{_A}id":
                item.guid = item.id_link = _text(_leaf(child), uri=True)
            elif tag == f"{_A}title":
                title = _text(child, html=_is_html(child))
                item.title = title if self.title_at(title, 3) else item.title
            elif tag == f"{_A}summary":
                item.summary = _text(child, html=_is_html(child))
            elif tag == f"{_A}content":
                item.content = _text(child, html=_is_html(child))
                item.summary = item.summary if item.summary is not None else item.content
            elif tag == f"{_A}author":
                item.author = self.person(child)
            elif tag == f"{_A}contributor":
                self.person(child)
            elif tag in (f"{_A}published", f"{_A}updated"):
                item.date(child, published=tag == f"{_A}published")
            elif tag == f"{_A}rights":
                _is_html(child)
            else:
                raise _Decline(f"unmapped entry element {tag}")
        if alternates:  # the last alternate HTML link wins over the id
            item.link = alternates[-1]
        self.items.append(item)


def _is_html(el: ET.Element) -> bool:
    """Whether an Atom text construct is HTML (True) or plain text (False)."""
    kind = _TEXT_TYPES.get(_leaf(el, ("type",)).get("type", "text").lower())
    if kind is None:
        raise _Decline("xhtml or another content type")
    return kind == "text/html"
