"""Write feed documents (RSS 2.0, Atom 1.0, JSON Feed 1.1) from plain items.

Used by the demo's feed server; also handy for serving test fixtures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Item:
    guid: str
    title: str
    text: str
    link: str | None = None
    published: datetime | None = None


def _paragraphs(text: str) -> str:
    paras = [p.strip().replace("\n", " ") for p in text.strip().split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p)}</p>" for p in paras)


def rss(title: str, link: str, items: list[Item]) -> bytes:
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
             f"<title>{escape(title)}</title><link>{escape(link)}</link>"
             f"<description>{escape(title)}</description>"]
    for it in items:
        parts.append("<item>"
                     f'<guid isPermaLink="false">{escape(it.guid)}</guid>'
                     f"<title>{escape(it.title)}</title>"
                     + (f"<link>{escape(it.link)}</link>" if it.link else "")
                     + (f"<pubDate>{format_datetime(it.published)}</pubDate>"
                        if it.published else "")
                     + f"<description>{escape(_paragraphs(it.text))}</description></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def atom(title: str, link: str, items: list[Item]) -> bytes:
    updated = max((it.published for it in items if it.published), default=None)
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n'
             '<feed xmlns="http://www.w3.org/2005/Atom">'
             f"<title>{escape(title)}</title><id>{escape(link)}</id>"
             f'<link href="{escape(link)}"/>'
             + (f"<updated>{updated.isoformat()}</updated>" if updated else "")]
    for it in items:
        when = it.published.isoformat() if it.published else None
        parts.append("<entry>"
                     f"<id>{escape(it.guid)}</id><title>{escape(it.title)}</title>"
                     + (f'<link href="{escape(it.link)}"/>' if it.link else "")
                     + (f"<published>{when}</published><updated>{when}</updated>"
                        if when else "")
                     + f'<content type="html">{escape(_paragraphs(it.text))}</content>'
                     "</entry>")
    parts.append("</feed>")
    return "".join(parts).encode("utf-8")


def json_feed(title: str, link: str, items: list[Item]) -> bytes:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": title,
        "home_page_url": link,
        "items": [
            {"id": it.guid, "title": it.title, "content_html": _paragraphs(it.text),
             **({"url": it.link} if it.link else {}),
             **({"date_published": it.published.isoformat()} if it.published else {})}
            for it in items
        ],
    }
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


RENDERERS = {"rss": (rss, "application/rss+xml"), "atom": (atom, "application/atom+xml"),
             "json": (json_feed, "application/feed+json")}


def render(fmt: str, title: str, link: str, items: list[Item]) -> tuple[bytes, str]:
    """Feed bytes and their content type for `fmt` in rss, atom, json."""
    writer, ctype = RENDERERS[fmt]
    return writer(title, link, items), ctype
