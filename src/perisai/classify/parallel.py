"""``classify --jobs N``: files, and big files cut at line boundaries, classified by N local
processes, their profiles merged into what one process finds.

A plain (uncompressed) JSON-lines or text file is cut into byte ranges (about
:data:`PARTS_PER_JOB` per process over all files, at least :data:`MIN_PART_BYTES` each) that
start and end at line boundaries; each range is classified on its own and the
ranges' profiles are merged in file order. Every count is per line, so records, records with
personal data and entity counts are exactly one process's; examples stay bounded (the first
few distinct masks of each type, range by range). A CSV file (its header names the columns)
and a ``.gz`` file (a stream cannot be entered in the middle) are one part each.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from perisai.bounded import not_a_regular_file
from perisai.classify.engine import Classifier
from perisai.classify.files import (
    SNIFF_BYTES,
    FileProfile,
    file_kind,
    profile_file,
    profile_range,
)
from perisai.classify.profile import classifier_for

__all__ = [
    "MIN_PART_BYTES",
    "Part",
    "classify_in_parallel",
    "merge_in_order",
    "part_mb",
    "part_size",
    "parts_of",
    "plan",
    "profile_part",
]

MIN_PART_BYTES = 4 * 1024 * 1024  # a range worth a worker's turn and a merge
PARTS_PER_JOB = 4  # ranges per process: a slow range does not leave the others idle
_GZIP = b"\x1f\x8b"

_classifier: Classifier | None = None  # one per worker process, built once


@dataclass(frozen=True)
class Part:
    """One unit of work: a whole file (``kind`` empty), or a byte range of one."""

    file: int  # index of the file, to merge in order
    path: Path
    start: int = 0
    end: int = 0
    kind: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start


def part_size(files: Sequence[Path], jobs: int) -> int:
    """Bytes per range: the files' total over ``jobs`` x PARTS_PER_JOB, at least the minimum."""
    total = sum(_size(path) for path in files)
    return max(MIN_PART_BYTES, -(-total // (jobs * PARTS_PER_JOB)))


def parts_of(index: int, path: Path, part_bytes: int = MIN_PART_BYTES) -> list[Part]:
    """``path`` as ranges cut at line boundaries, or as one whole-file part when it is small,
    compressed, a CSV, binary or not a regular file (the whole-file reader says why)."""
    whole = [Part(index, path)]
    if not_a_regular_file(path) is not None or path.is_dir():
        return whole
    try:
        size = path.stat().st_size
        if size <= part_bytes:
            return whole
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
            if head.startswith(_GZIP) or b"\x00" in head:
                return whole
            kind = file_kind(path, head)
            if kind == "csv":
                return whole
            cuts = [0]
            while cuts[-1] + part_bytes < size:
                handle.seek(cuts[-1] + part_bytes)
                handle.readline()  # to the end of the line the cut fell in
                if handle.tell() >= size:
                    break
                cuts.append(handle.tell())
    except OSError:
        return whole  # the whole-file reader reports it
    cuts.append(size)
    return [Part(index, path, a, b, kind) for a, b in itertools.pairwise(cuts)]


def _start_worker(regions: tuple[str, ...]) -> None:
    global _classifier
    _classifier = classifier_for(regions)


def _run(part: Part) -> tuple[Part, FileProfile]:
    assert _classifier is not None, "worker not initialised"
    return part, profile_part(part, _classifier)


def profile_part(part: Part, classifier: Classifier) -> FileProfile:
    """One part's profile: the whole file's, or its range's."""
    if not part.kind:
        return profile_file(part.path, classifier)
    return profile_range(part.path, part.start, part.end, part.kind, classifier)


def plan(files: Sequence[Path], part_bytes: int) -> list[Part]:
    """Every file's parts, in file order."""
    return [part for index, path in enumerate(files) for part in parts_of(index, path, part_bytes)]


def merge_in_order(
    files: Sequence[Path], parts: Sequence[Part], done: Mapping[Part, FileProfile]
) -> list[FileProfile]:
    """One profile per file, its parts' profiles merged in order and named as ``files``
    names it (a part may have been read at another spelling of the path)."""
    merged: list[FileProfile] = []
    by_file = itertools.groupby(parts, key=lambda part: part.file)
    for position, ((index, pieces), path) in enumerate(zip(by_file, files, strict=True)):
        assert index == position, "parts out of file order"
        profiles = [done[part] for part in pieces]
        whole = profiles[0]
        if len(profiles) > 1:
            whole = FileProfile(str(path), kind=profiles[0].kind)
            for piece in profiles:
                whole.merge(piece)
        whole.path = str(path)
        merged.append(whole)
    return merged


def part_mb(part: Part) -> float:
    """What a finished part moves the progress bar by: its range, or its file's size."""
    return (part.size or _size(part.path)) / 1e6


def classify_in_parallel(
    files: Sequence[Path],
    regions: tuple[str, ...],
    jobs: int,
    on_bytes: Callable[[float], None] | None = None,
    part_bytes: int | None = None,
) -> list[FileProfile]:
    """Each file's profile, as :func:`~perisai.classify.files.profile_file` gives it, from
    ``jobs`` processes; ``on_bytes`` gets each finished part's size in megabytes.
    ``part_bytes`` (default: :func:`part_size`) is the size ranges are cut at."""
    part_bytes = part_bytes or part_size(files, jobs)
    parts = plan(files, part_bytes)
    done: dict[Part, FileProfile] = {}
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(regions,)
    ) as pool:
        futures: list[Future[tuple[Part, FileProfile]]] = [
            pool.submit(_run, part) for part in parts
        ]
        for future in as_completed(futures):
            part, profile = future.result()
            done[part] = profile
            if on_bytes is not None:
                on_bytes(part_mb(part))
    return merge_in_order(files, parts, done)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
