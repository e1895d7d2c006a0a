"""`storywatch feeds add/remove/enable/disable/show/import/export` and OPML."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.feeds.opml import OpmlError, OpmlFeed, parse_opml, to_opml

OPML = b"""<?xml version="1.0"?><opml version="2.0"><head><title>mine</title></head><body>
<outline text="News" title="News">
  <outline type="rss" text="Alpha" title="Alpha" xmlUrl="https://alpha.example/feed"/>
  <outline type="rss" text="Beta" xmlUrl="https://beta.example/rss" category="/world,tech"/>
</outline>
<outline type="rss" text="Gamma" xmlUrl="https://gamma.example/atom"/>
<outline text="Empty folder"/>
</body></opml>"""


def test_opml_folders_become_tags_and_round_trip() -> None:
    feeds = parse_opml(OPML)
    assert feeds == [OpmlFeed("https://alpha.example/feed", "Alpha", ("News",)),
                     OpmlFeed("https://beta.example/rss", "Beta", ("News", "world", "tech")),
                     OpmlFeed("https://gamma.example/atom", "Gamma", ())]
    assert parse_opml(to_opml(feeds)) == feeds


def test_opml_errors_are_clear() -> None:
    with pytest.raises(OpmlError, match="well-formed"):
        parse_opml(b"<opml><body>")
    with pytest.raises(OpmlError, match="not an OPML"):
        parse_opml(b"<rss/>")


def cli(db: str, *args: str) -> int:
    return main(["--database", db, *args])


def test_feed_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(db, "db", "upgrade") == 0
    (tmp_path / "in.opml").write_bytes(OPML)
    assert cli(db, "feeds", "import", str(tmp_path / "in.opml")) == 0
    assert "imported 3 feeds" in capsys.readouterr().out

    assert cli(db, "feeds", "add", "https://delta.example/feed", "--name", "Delta",
               "--tag", "x", "--interval", "30m") == 0
    assert cli(db, "feeds", "disable", "https://delta.example/feed") == 0
    capsys.readouterr()
    assert cli(db, "feeds", "show", "4") == 0
    shown = capsys.readouterr().out
    assert "state:            disabled" in shown and "next check:" in shown
    assert "last error:" in shown and "failures:         0" in shown
    assert cli(db, "feeds", "enable", "4") == 0
    assert cli(db, "feeds", "remove", "https://alpha.example/feed") == 0
    assert cli(db, "feeds", "show", "https://alpha.example/feed") == 1
    assert "no feed" in capsys.readouterr().err

    out = tmp_path / "out.opml"
    assert cli(db, "feeds", "export", "-o", str(out)) == 0
    exported = parse_opml(out.read_bytes())
    assert [f.url for f in exported] == ["https://beta.example/rss",
                                         "https://gamma.example/atom",
                                         "https://delta.example/feed"]
    assert cli(db, "feeds", "add", "https://e.example/", "--interval", "soon") == 2
    assert cli(db, "feeds", "import", str(tmp_path / "missing.opml")) == 1
