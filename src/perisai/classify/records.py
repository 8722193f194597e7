"""Walk structured records into ``(key, text)`` leaves, bounded in depth and size."""

from __future__ import annotations

import json
from collections.abc import Iterator

MAX_TEXT_CHARS = 64 * 1024  # a longer value is walked on its head only
MAX_DEPTH = 16  # deeper nesting is not walked (hostile input must not blow the stack)


def iter_fields(
    record: object, key: str | None = None, depth: int = 0
) -> Iterator[tuple[str | None, str]]:
    """Walk a record (dict, list, JSON text, bytes, scalar) into ``(key, text)`` leaves."""
    if depth > MAX_DEPTH:
        return
    if isinstance(record, dict):
        for child_key, value in record.items():
            yield from iter_fields(value, str(child_key), depth + 1)
    elif isinstance(record, (list, tuple, set, frozenset)):
        for item in record:
            yield from iter_fields(item, key, depth + 1)
    elif isinstance(record, (bytes, bytearray, memoryview)):
        text = bytes(record[:MAX_TEXT_CHARS]).decode("utf-8", "replace")
        yield from iter_fields(text, key, depth)
    elif isinstance(record, str):
        stripped = record.lstrip()
        if stripped[:1] in ("{", "[") and len(record) <= MAX_TEXT_CHARS:
            try:
                parsed = json.loads(record)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, (dict, list)):
                yield from iter_fields(parsed, key, depth + 1)
                return
        yield key, record[:MAX_TEXT_CHARS]
    elif record is not None:
        yield key, str(record)
