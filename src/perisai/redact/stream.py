"""Stream redaction: one line in, one line out, memory flat in the input's size."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from perisai.redact.redactor import Redactor

MAX_LINE_CHARS = 8 * 1024 * 1024  # a longer line is replaced, not held: it cannot be checked


def redact_lines(lines: Iterable[str], redactor: Redactor) -> Iterator[str]:
    """Redact each line; JSON lines stay valid JSON, redacted in place (keys too), every
    other byte as it was.

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
                in_place = redactor.json_line(line)
                if in_place is None:  # a replacement would break it: re-serialise
                    in_place = json.dumps(redactor.value(document), ensure_ascii=False)
                yield in_place
                continue
        yield redactor.text(line)
