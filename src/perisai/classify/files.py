"""Profile files, dumps and logs: JSON lines, CSV, plain text, gzip'd or not; streaming.

Each file is read line by line (memory flat in its size); a file that cannot be read, or is
binary, is reported with the reason and skipped, never ending the run.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

from stdnum import imei

from perisai import __version__
from perisai.bounded import DecompressionCapped, not_a_regular_file, open_binary
from perisai.classify import jsonfields, logfmt
from perisai.classify.engine import Classifier
from perisai.classify.keyhints import from_kind, key_kind
from perisai.classify.match import EntityMatch, FieldMatches
from perisai.findings import EXAMPLES_PER_ENTITY

SNIFF_BYTES = 8192
MAX_LINE_CHARS = 1 << 20
EXAMPLES_OFFERED = 64  # masks of one type looked at for distinct examples, at most
_ENTITIES = itemgetter(1)  # a FieldMatches' entity types
BLOCK_BYTES = 1 << 20  # JSON lines are read and classified about this much at a time


@dataclass
class FileProfile:
    """What one file holds: records, how many carry personal data, entity counts."""

    path: str
    kind: str = "text"  # jsonl | csv | text
    records: int = 0
    records_with_personal_data: int = 0
    bytes_read: int = 0
    entities: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the file was not read

    @property
    def share_with_personal_data(self) -> float:
        return self.records_with_personal_data / self.records if self.records else 0.0

    _shown: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _offered: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def add(self, entity: str, masked: str) -> None:
        """Count one entity; keep its mask as an example while the type has few (hot path)."""
        self.entities[entity] = self.entities.get(entity, 0) + 1
        if self._shown.get(entity, 0) < EXAMPLES_PER_ENTITY:
            self._example(f"{entity}: {masked}")

    def wants_example(self, entity: str) -> bool:
        """Whether examples of ``entity`` are still sought: until it has a few distinct ones,
        or enough were offered (masks that look alike, ``<code, 6 digits>``, never differ)."""
        return (
            self._shown.get(entity, 0) < EXAMPLES_PER_ENTITY
            and self._offered.get(entity, 0) < EXAMPLES_OFFERED
        )

    def example(self, entity: str, masked: str) -> None:
        """Keep ``masked`` as an example of ``entity`` if the type still has few."""
        self._offered[entity] = self._offered.get(entity, 0) + 1
        self._example(f"{entity}: {masked}")

    def _example(self, example: str) -> None:
        entity = example.split(": ", 1)[0]
        if self._shown.get(entity, 0) < EXAMPLES_PER_ENTITY and example not in self.examples:
            self.examples.append(example)
            self._shown[entity] = self._shown.get(entity, 0) + 1

    def merge(self, other: FileProfile) -> None:
        self.records += other.records
        self.records_with_personal_data += other.records_with_personal_data
        self.bytes_read += other.bytes_read
        for entity, count in other.entities.items():
            self.entities[entity] = self.entities.get(entity, 0) + count
        for example in other.examples:
            self._example(example)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "records": self.records,
            "records_with_personal_data": self.records_with_personal_data,
            "share_with_personal_data": round(self.share_with_personal_data, 4),
            "bytes_read": self.bytes_read,
            "entities": dict(sorted(self.entities.items())),
            "examples": list(self.examples),
            "skipped": self.skipped,
        }


@dataclass
class ClassifyReport:
    """What ``classify`` found: one profile per file, in order, and their total."""

    files: list[FileProfile]
    total: FileProfile

    @classmethod
    def of(cls, files: list[FileProfile]) -> ClassifyReport:
        total = FileProfile("TOTAL", kind="")
        for profile in files:
            total.merge(profile)
        return cls(files, total)

    @property
    def skipped(self) -> list[FileProfile]:
        """The files that were not read, each with its reason."""
        return [profile for profile in self.files if profile.skipped]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "perisai",
            "version": __version__,
            "files": [profile.to_dict() for profile in self.files],
            "total": self.total.to_dict(),
        }


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and files under directories named (recursively, sorted, no symlink loops)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not child.is_symlink():
                    yield child
        else:
            yield path


def profile_file(
    path: Path, classifier: Classifier, on_bytes: Callable[[int], None] | None = None
) -> FileProfile:
    """Classify one file; problems become ``skipped`` with a reason, never an exception."""
    profile = FileProfile(str(path))
    if (why := not_a_regular_file(path)) is not None:
        profile.skipped = why
        return profile
    try:
        with open_binary(path) as binary:
            head = binary.peek(SNIFF_BYTES)[:SNIFF_BYTES]
            if b"\x00" in head:
                profile.skipped = "binary file (NUL bytes)"
                return profile
            profile.kind = file_kind(path, head)
            if profile.kind == "jsonl":
                _profile_jsonl(binary, classifier, profile, on_bytes)
                return profile
            if profile.kind == "text":
                _profile_text(binary, classifier, profile, on_bytes)
                return profile
            text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
            reader = _CountingLines(text, on_bytes)
            _profile_csv(reader, classifier, profile, head.decode("utf-8", "replace"))
            profile.bytes_read = reader.bytes
    except DecompressionCapped as error:
        profile.skipped = f"{error}; what was read before it is counted"
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        profile.skipped = f"unreadable: {getattr(error, 'strerror', None) or error}"
    except csv.Error as error:
        profile.skipped = f"malformed CSV: {error}"
    return profile


def file_kind(path: Path, head: bytes) -> str:
    """``jsonl``, ``csv`` or ``text``: how a file is read, from its name and first bytes."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json") or head.lstrip()[:1] in (b"{", b"["):
        return "jsonl"
    return "text"


def profile_range(
    path: Path, start: int, end: int, kind: str, classifier: Classifier
) -> FileProfile:
    """Classify bytes ``start``..``end`` of a plain JSON-lines or text file, a range cut at
    line boundaries (see :mod:`perisai.classify.parallel`); merged in order, ranges give what
    :func:`profile_file` gives for the whole file."""
    profile = FileProfile(str(path), kind=kind)
    try:
        with path.open("rb") as raw:
            raw.seek(start)
            # the readers take a buffered file; a window onto one range is such a file
            window = cast(
                io.BufferedReader, io.BufferedReader(_Window(raw, end - start), BLOCK_BYTES)
            )
            reader = _profile_jsonl if kind == "jsonl" else _profile_text
            reader(window, classifier, profile, None)
    except OSError as error:
        profile.skipped = f"unreadable: {error.strerror or error}"
    return profile


class _Window(io.RawIOBase):
    """At most ``length`` bytes of ``raw`` from where it stands: a range read as a file."""

    def __init__(self, raw: io.BufferedReader, length: int) -> None:
        self.raw = raw
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(buffer)[: self.left]
        count = self.raw.readinto(view) or 0
        self.left -= count
        return count


class _CountingLines:
    """Lines of a text stream, each cut at MAX_LINE_CHARS; counts bytes for progress."""

    def __init__(self, text: io.TextIOWrapper, on_bytes: Callable[[int], None] | None) -> None:
        self.text = text
        self.on_bytes = on_bytes
        self.bytes = 0

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.text.readline(MAX_LINE_CHARS)
            if not line:
                return
            size = len(line)
            if size == MAX_LINE_CHARS and not line.endswith("\n"):
                size += self._skip_rest()  # an over-long line is classified on its head only
            self.bytes += size
            if self.on_bytes:
                self.on_bytes(size)
            yield line.rstrip("\r\n")

    def _skip_rest(self) -> int:
        skipped = 0
        while True:
            chunk = self.text.readline(MAX_LINE_CHARS)
            skipped += len(chunk)
            if not chunk or chunk.endswith("\n"):
                return skipped


def _count(profile: FileProfile, matches: Iterable[EntityMatch]) -> None:
    profile.records += 1
    found = False
    for match in matches:
        found = True
        profile.add(match.entity, match.masked)
    if found:
        profile.records_with_personal_data += 1


def _profile_text(
    binary: io.BufferedReader,
    classifier: Classifier,
    profile: FileProfile,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """Blocks of whole lines (long ones cut, see ``_line_blocks``); a key=value line is the
    flat record it is and goes the JSON-lines field path (see :mod:`logfmt`), any other line
    is read as text. Blank lines cost a split and nothing more."""
    for block in _line_blocks(binary, profile, on_bytes):
        _count_fields(profile, classifier, logfmt.as_json(block))


def _profile_jsonl(
    binary: io.BufferedReader,
    classifier: Classifier,
    profile: FileProfile,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """The fast path: blocks of raw bytes, never decoded or parsed as a whole; each field
    with personal data is found once per block (see ``Classifier.scan_json_block``)."""
    for block in _line_blocks(binary, profile, on_bytes):
        _count_fields(profile, classifier, block)


def _count_fields(profile: FileProfile, classifier: Classifier, block: bytes) -> None:
    profile.records += jsonfields.count_records(block)
    lines, results = classifier.scan_json_block(block)
    profile.records_with_personal_data += len(set(lines))
    # Count by each field's set of entity types (a handful per block), never field by
    # field; walk the matches only while some type still lacks its examples.
    wanting: set[str] = set()
    for entities, count in Counter(map(_ENTITIES, results)).items():
        for entity in entities:
            profile.entities[entity] = profile.entities.get(entity, 0) + count
            if profile.wants_example(entity):
                wanting.add(entity)
    if wanting:
        _collect_examples(profile, results, wanting)


def _collect_examples(profile: FileProfile, results: list[FieldMatches], wanting: set[str]) -> None:
    for matches, _ in results:
        for entity, _, _, masked, _, _ in matches:
            if entity in wanting:
                profile.example(entity, masked)
                if not profile.wants_example(entity):
                    wanting.discard(entity)
        if not wanting:
            return


def _line_blocks(
    binary: io.BufferedReader,
    profile: FileProfile,
    on_bytes: Callable[[int], None] | None,
) -> Iterator[bytes]:
    """Whole lines, about BLOCK_BYTES at a time; a line longer than MAX_LINE_CHARS bytes is
    cut there (its head is classified, the rest skipped), so memory stays flat."""
    carry = b""
    skipping = False  # inside the tail of an over-long line
    while chunk := binary.read(BLOCK_BYTES):
        profile.bytes_read += len(chunk)
        if on_bytes:
            on_bytes(len(chunk))
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                continue
            chunk, skipping = chunk[cut + 1 :], False
        data = carry + chunk
        last = data.rfind(b"\n")
        if last < 0:
            if len(data) > MAX_LINE_CHARS:
                yield data[:MAX_LINE_CHARS]
                carry, skipping = b"", True
            else:
                carry = data
            continue
        carry = data[last + 1 :]
        if len(carry) > MAX_LINE_CHARS:
            yield data[: last + 1 + MAX_LINE_CHARS]
            carry, skipping = b"", True
        else:
            yield data[: last + 1]
    if carry:
        yield carry


def _profile_csv(
    lines: Iterable[str], classifier: Classifier, profile: FileProfile, head: str = ""
) -> None:
    for record in csv_records(lines, head):
        _count(profile, (m for _, m in classifier.scan_record(record)))


def csv_records(lines: Iterable[str], head: str = "") -> Iterator[dict[str, str]]:
    """Rows as records keyed by their header; a file without one (the stdlib's sniffer says)
    gets column names from what each column holds across its first rows, so a column of
    bare msisdn digits or coordinates is read as the record walk reads such keys."""
    rows = csv.reader(lines)
    top = next(rows, None)
    if top is None:
        return
    try:
        sniffed = csv.Sniffer().has_header(head) if head.strip() else True
    except csv.Error:
        sniffed = True
    if sniffed or (top and all(_HEADERISH.match(cell) for cell in top)):
        # the sniffer's guess, or every cell a short name (it misses on few rows); a column
        # whose name tells nothing (note, comment, c7) is named for what its values are
        first = list(itertools.islice(rows, INFER_ROWS))
        header = infer_columns(first, top)
    else:
        first = [top, *itertools.islice(rows, INFER_ROWS - 1)]
        header = infer_columns(first)
    for row in itertools.chain(first, rows):
        yield {
            header[n] if n < len(header) else f"column{n + 1}": value for n, value in enumerate(row)
        }


INFER_ROWS = 200  # rows a header-less CSV's column types are read from
_HEADERISH = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .-]{0,40}$")
INFER_SHARE = 0.8  # the share of a column's values that must fit a kind


# Names that tell a column's kind, one after another for a second column of the same kind
_KIND_NAMES = {
    "imei": ("imei",),
    "msisdn": ("msisdn", "phone", "mobile", "tel"),
    "lat": ("lat", "latitude"),
    "lon": ("lon", "longitude", "lng"),
    "name": ("name", "full_name", "sender_name", "recipient_name"),
    "body": ("body", "message", "text", "msg", "content"),
}


def infer_columns(rows: list[list[str]], header: list[str] | None = None) -> list[str]:
    """A name per column that tells what most of its values are (``msisdn``, ``lat``,
    ``imei``, ``body``, ``name``), else ``columnN``: the key context a header would give.
    With a ``header``, only columns whose own name tells nothing (``note``) are renamed."""
    width = max(len(header or ()), *(len(row) for row in rows), 0)
    names = list(header or ()) + [f"column{n + 1}" for n in range(len(header or ()), width)]
    used = set(names)
    for n in range(width):
        if header is not None and n < len(header) and key_kind(header[n]) is not None:
            continue
        kind = _column_kind(_column(rows, n))
        name = next((name for name in _KIND_NAMES.get(kind or "", ()) if name not in used), None)
        if name is not None:
            names[n] = name
            used.add(name)
    return names


def _column(rows: list[list[str]], n: int) -> list[str]:
    """Column ``n``'s values that are not blank."""
    return [row[n].strip() for row in rows if n < len(row) and row[n].strip()]


def _column_kind(values: list[str]) -> str | None:
    if not values:
        return None
    tests: tuple[tuple[str, Callable[[str], bool]], ...] = (
        ("imei", lambda v: len(v) == 15 and v.isdigit() and imei.is_valid(v)),
        ("msisdn", lambda v: bool(from_kind(v, "phone"))),
        # a fix's precision, which amounts (2 decimals) and ratios do not have
        ("lat", lambda v: _decimals(v) >= 3 and bool(from_kind(v, "lat"))),
        ("lon", lambda v: _decimals(v) >= 3 and bool(from_kind(v, "lon"))),
        ("name", lambda v: bool(from_kind(v, "person"))),
        ("body", lambda v: " " in v.strip() and bool(from_kind(v, "message"))),
    )
    for name, fits in tests:
        if sum(map(fits, values)) >= INFER_SHARE * len(values):
            return name
    return None


def _decimals(value: str) -> int:
    return len(value.partition(".")[2])
