"""Reading what users point perisai at, with memory bounded by construction.

- Only regular files are read: a FIFO, device or socket named as a file is skipped with a
  reason (opening a FIFO with no writer blocks forever; a device never ends).
- A ``.gz`` file is decompressed under a cap: more than :data:`MAX_GZIP_RATIO` times its
  compressed size (past the first :data:`GZIP_RATIO_FREE` bytes) or :data:`MAX_GZIP_BYTES` in
  all stops it, with the reason (a gzip bomb of newlines inflates a thousandfold).
- Text is read in windows of at most ``cap`` characters: a long line is never held whole.
"""

from __future__ import annotations

import gzip
import io
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "GZIP_RATIO_FREE",
    "MAX_GZIP_BYTES",
    "MAX_GZIP_RATIO",
    "CappedGzip",
    "DecompressionCapped",
    "not_a_regular_file",
    "open_binary",
    "open_text",
    "text_windows",
]

MAX_GZIP_RATIO = 200  # logs compress 5 to 30 times, JSON lines up to ~100, newlines 1000
GZIP_RATIO_FREE = 16 << 20  # small files may compress better than any ratio: no cap below
MAX_GZIP_BYTES = 64 << 30  # decompressed, per file
WINDOW_OVERLAP = 256  # a window is cut at the last blank within this many characters


class DecompressionCapped(OSError):
    """A ``.gz`` file inflated past its cap; the message says how far and why it stopped."""


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` is not read (a FIFO, device, socket), or None for a regular file. Missing
    paths are left to the open call, which says so."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    return f"{kind}, not a regular file: not read (it may never end)"


class CappedGzip(io.RawIOBase):
    """A gzip file's decompressed bytes, stopped with :class:`DecompressionCapped` at the cap."""

    def __init__(self, path: Path, ratio: int = MAX_GZIP_RATIO, total: int = MAX_GZIP_BYTES):
        self._raw = path.open("rb")
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="rb")
        self._ratio, self._total = ratio, total
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = self._gzip.readinto(buffer)
        self._out += count
        compressed = max(self._raw.tell(), 1)
        if self._out > self._total:
            raise DecompressionCapped(
                f"decompression stopped after {self._out >> 20:,} MiB (the cap per file)"
            )
        if self._out > GZIP_RATIO_FREE and self._out > self._ratio * compressed:
            raise DecompressionCapped(
                f"decompression stopped after {self._out >> 20:,} MiB from "
                f"{compressed >> 10:,} KiB compressed: more than {self._ratio}× (a gzip bomb?)"
            )
        return count

    def close(self) -> None:
        try:
            self._gzip.close()
        finally:
            self._raw.close()
            super().close()


def open_binary(path: Path) -> io.BufferedReader:
    """``path`` for reading as bytes, a ``.gz`` decompressed under its cap."""
    if path.suffix.lower() == ".gz":
        return io.BufferedReader(CappedGzip(path))
    return path.open("rb")


def text_windows(stream: IO[str], cap: int) -> Iterator[tuple[str, bool]]:
    """``(text, ends_line)`` pieces of ``stream``: whole lines (without their newline), or, of
    a line longer than ``cap``, windows of at most ``cap`` characters cut at a blank near the
    end where there is one, so a value is rarely split. Read in blocks of ``cap`` characters,
    split in C; memory: two blocks."""
    rest = ""
    while chunk := stream.read(cap):
        lines = (rest + chunk).split("\n")
        rest = lines.pop()
        for line in lines:
            yield line.removesuffix("\r"), True
        while len(rest) >= cap:
            tail = rest[:cap]
            cut = max(tail.rfind(" ", cap - WINDOW_OVERLAP), tail.rfind("\t", cap - WINDOW_OVERLAP))
            cut = cut + 1 if cut > 0 else cap
            yield rest[:cut], False
            rest = rest[cut:]
    if rest:
        yield rest.removesuffix("\r"), True


def open_text(path: Path) -> IO[str]:
    """``path`` as UTF-8 text (bad bytes replaced), a ``.gz`` decompressed under its cap."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace", newline="")
