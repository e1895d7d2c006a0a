"""OPML import and export of the feed list (what every feed reader speaks).

Folders (nested outlines without a feed URL) become tags on import and are
rebuilt from the first tag on export. The parser is the standard library's
expat, which refuses external entities and caps entity expansion.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field


class OpmlError(Exception):
    """The file is not OPML we can read."""


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str | None = None
    tags: tuple[str, ...] = field(default=())


def _walk(node: ET.Element, tags: tuple[str, ...], out: list[OpmlFeed]) -> None:
    for child in node.findall("outline"):
        url = (child.get("xmlUrl") or child.get("xmlurl") or "").strip()
        title = child.get("title") or child.get("text")
        if url:
            extra = tuple(t.strip() for t in (child.get("category") or "").split(",")
                          if t.strip().strip("/"))
            out.append(OpmlFeed(url, title, tags + tuple(t.strip("/") for t in extra)))
        else:
            _walk(child, tags + ((title,) if title else ()), out)


def parse_opml(data: bytes) -> list[OpmlFeed]:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise OpmlError(f"not well-formed XML: {exc}") from exc
    body = root.find("body")
    if root.tag != "opml" or body is None:
        raise OpmlError("not an OPML document (no <opml><body>)")
    out: list[OpmlFeed] = []
    _walk(body, (), out)
    return out


def to_opml(feeds: Iterable[OpmlFeed], title: str = "Storywatch feeds") -> bytes:
    root = ET.Element("opml", version="2.0")
    ET.SubElement(ET.SubElement(root, "head"), "title").text = title
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for feed in feeds:
        parent = body
        if feed.tags:
            folder = feed.tags[0]
            if folder not in folders:
                folders[folder] = ET.SubElement(body, "outline", text=folder, title=folder)
            parent = folders[folder]
        attrs = {"type": "rss", "text": feed.title or feed.url, "title": feed.title or feed.url,
                 "xmlUrl": feed.url}
        if len(feed.tags) > 1:
            attrs["category"] = ",".join(feed.tags[1:])
        ET.SubElement(parent, "outline", attrs)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
