"""Normalise a raw entry: canonical URL, clean text, content hash, identity, event time.

Pure functions on plain data; every later stage (dedup, clustering, rules)
works on the `NormalisedEntry` made here.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.feeds.parse import RawEntry

_TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid",
    "_hsenc", "_hsmi", "mkt_tok", "ref", "ref_src", "ref_url", "cmpid", "ncid", "ocid", "sr_share",
    "smid", "s_cid", "cmp", "rss", "amp", "outputtype", "spm", "xtor", "wt_mc", "wt.mc_id",
    "icid",
})
_TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_", "hsa_", "oly_", "vero_", "__")
_MOBILE_HOST = re.compile(r"^(?:m|mobile|amp|www)\.")
_AMP_PATH = re.compile(r"(?:/amp/?$|/amp(?=/)|\.amp(?=\.html?$|$))")
_SLASHES = re.compile(r"/{2,}")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_FUTURE_TOLERANCE = timedelta(minutes=10)
_PAST_LIMIT = timedelta(days=365 * 20)


def canonical_url(url: str | None) -> str | None:
    """A URL stripped of tracking parameters, fragments, AMP and mobile variants.

    Two links that differ only in these point at the same article, so they
    must compare equal for exact deduplication.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return url.strip() or None
    host = parts.hostname.lower().rstrip(".")
    while _MOBILE_HOST.match(host) and host.count(".") > 1:
        host = _MOBILE_HOST.sub("", host, count=1)
    port = parts.port
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = _AMP_PATH.sub("", parts.path) or "/"
    path = _SLASHES.sub("/", path)
    if len(path) > 1:
        path = path.rstrip("/")
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if not _is_tracking(k)) if parts.query else ()
    return urlunsplit(("https", netloc, path, urlencode(query), ""))


def _is_tracking(key: str) -> bool:
    low = key.lower()
    return low in _TRACKING_PARAMS or low.startswith(_TRACKING_PREFIXES)


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK = frozenset({"p", "br", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
                        "blockquote", "section", "article", "figcaption"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def clean_text(value: str | None) -> str:
    """HTML (or plain text) → readable plain text with collapsed spacing."""
    if not value:
        return ""
    if "<" in value:
        parser = _TextExtractor()
        parser.feed(value)
        parser.close()
        value = "".join(parser.parts)
    else:
        value = html.unescape(value)
    lines = (" ".join(line.split()) for line in value.splitlines())
    return "\n".join(line for line in lines if line)


def fold(text: str) -> str:
    """Case- and accent-insensitive form used for matching and hashing."""
    if text.isascii():
        return text.lower()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))


def content_hash(title: str, text: str) -> str:
    """Hash of folded title+text: identical content from any feed compares equal."""
    folded = " ".join(fold(f"{title}\n{text}").split())
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NormalisedEntry:
    key: str
    keys: tuple[tuple[int, str], ...]
    guid: str | None
    url: str | None
    canonical_url: str | None
    title: str
    text: str
    summary: str | None
    content: str | None
    author: str | None
    tags: tuple[str, ...]
    language: str | None
    published: datetime | None
    event_at: datetime
    content_hash: str


def event_time(published: datetime | None, updated: datetime | None,
               fetched_at: datetime) -> datetime:
    """Published (else updated) time, clamped to the fetch time when absurd."""
    when = published or updated
    if when is None or when > fetched_at + _FUTURE_TOLERANCE or when < fetched_at - _PAST_LIMIT:
        return fetched_at
    return min(when, fetched_at)


GUID, LINK, TITLE_DATE, TITLE_TEXT = range(4)
"""Identity key levels, most trusted first; a feed can be degraded to a later level."""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def identity_keys(guid: str | None, canonical: str | None, title: str, text: str,
                  published: datetime | None) -> tuple[tuple[int, str], ...]:
    """Every identity key an entry has, as (level, key), most trusted first.

    Built from the GUID, the link, title+date and title+text only, never from
    stored bodies, so a key stays valid after its entry has been pruned.
    """
    keys: list[tuple[int, str]] = []
    if guid:
        keys.append((GUID, "g:" + guid if len(guid) <= 290 else "g#" + _digest(guid)))
    if canonical:
        keys.append((LINK, "u:" + _digest(canonical)))
    if published:
        keys.append((TITLE_DATE, "h:" + _digest(f"{title}\n{published.isoformat()}")))
    keys.append((TITLE_TEXT, "h:" + _digest(f"{title}\n{text}")))
    return tuple(keys)


def normalise(entries: list[RawEntry], fetched_at: datetime) -> list[NormalisedEntry]:
    """Normalise one fetch's entries, dropping exact repeats within the fetch.

    `key` skips keys several items of this fetch share (a feed that repeats
    one GUID for every item); `keys` keeps them all for the identity resolver.
    """
    out: list[NormalisedEntry] = []
    seen: set[tuple[tuple[int, str], ...]] = set()
    for raw in entries:
        title = clean_text(raw.title).replace("\n", " ")
        body = clean_text(raw.content or raw.summary)
        canonical = canonical_url(raw.link)
        keys = identity_keys(raw.guid, canonical, title, body, raw.published)
        if keys in seen:
            continue
        seen.add(keys)
        out.append(NormalisedEntry(
            key=keys[0][1], keys=keys, guid=raw.guid, url=raw.link, canonical_url=canonical,
            title=title, text=body, summary=clean_text(raw.summary) or None,
            content=raw.content, author=raw.author, tags=raw.tags, language=raw.language,
            published=raw.published or raw.updated,
            event_at=event_time(raw.published, raw.updated, fetched_at),
            content_hash=content_hash(title, body),
        ))
    counts = Counter(k for e in out for _, k in e.keys)
    shared = frozenset(k for k, n in counts.items() if n > 1)
    if not shared:
        return out
    return [replace(e, key=next((k for _, k in e.keys if k not in shared), e.keys[-1][1]))
            for e in out]
