"""Bounded decompression of `Content-Encoding` bodies (gzip, deflate, brotli).

httpx's own decoders inflate a whole network chunk at once, so a 64 KiB
gzip bomb chunk becomes tens of megabytes before any cap can look at it.
These decoders never produce more than `step` bytes per call, so the body
cap in `fetch` holds for the decompressed size too.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli

ACCEPT_ENCODING = "gzip, deflate, br"
STEP = 64 * 1024


class DecodeError(Exception):
    """The body does not decode with its declared `Content-Encoding`."""


class Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...
    def finish(self) -> Iterator[bytes]: ...


class Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def finish(self) -> Iterator[bytes]:
        return iter(())


class Zlib:
    """gzip (wbits 16+) or deflate (zlib-wrapped, falling back to raw as browsers do)."""

    def __init__(self, gzip: bool) -> None:
        self.gzip = gzip
        self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        self.started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            if not self.started and not self.gzip and data:
                self.started = True
                try:
                    yield from self._inflate(data)
                    return
                except zlib.error:
                    self.obj = zlib.decompressobj(-zlib.MAX_WBITS)
            self.started = True
            yield from self._inflate(data)
        except zlib.error as exc:
            raise DecodeError(f"bad {'gzip' if self.gzip else 'deflate'} body: {exc}") from exc

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        while data:
            out = self.obj.decompress(data, STEP)
            data = self.obj.unconsumed_tail
            if out:
                yield out
            if self.obj.eof:
                return

    def finish(self) -> Iterator[bytes]:
        tail = self.obj.flush()
        if tail:
            yield tail


class Brotli:
    def __init__(self) -> None:
        self.obj = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self.obj.process(data, output_buffer_limit=STEP)
            while True:
                if out:
                    yield out
                if self.obj.can_accept_more_data():
                    return
                out = self.obj.process(b"", output_buffer_limit=STEP)
        except brotli.error as exc:
            raise DecodeError(f"bad brotli body: {exc}") from exc

    def finish(self) -> Iterator[bytes]:
        return iter(())


def decoder_for(content_encoding: str | None) -> Decoder:
    """A decoder for the (single) declared encoding; unknown ones are an error."""
    name = (content_encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return Identity()
    if name in ("gzip", "x-gzip"):
        return Zlib(gzip=True)
    if name == "deflate":
        return Zlib(gzip=False)
    if name == "br":
        return Brotli()
    raise DecodeError(f"unsupported Content-Encoding {content_encoding!r}")
