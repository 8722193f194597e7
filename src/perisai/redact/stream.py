"""Stream redaction: one line in, one line out, memory flat in the input's size."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from perisai.redact.redactor import Redactor

MAX_LINE_CHARS = 8 * 1024 * 1024  # a longer line is replaced, not held: it cannot be checked


def redact_lines(lines: Iterable[str], redactor: Redactor) -> Iterator[str]:
    """Redact each line; JSON lines stay valid JSON with their values redacted.

    Lines are yielded without their newline.
    """
    for raw in lines:
        line = raw.rstrip("\r\n")
        if len(line) > MAX_LINE_CHARS:
            yield f"<redacted: line of {len(line)} characters>"
            continue
        stripped = line.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                document = json.loads(line)
            except (ValueError, RecursionError):
                document = None
            if isinstance(document, (dict, list)):
                yield json.dumps(redactor.value(document), ensure_ascii=False)
                continue
        yield redactor.text(line)
