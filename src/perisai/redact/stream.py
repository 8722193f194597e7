"""Stream redaction: one line in, one line out, memory flat in the input's size."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO

from perisai.bounded import text_windows
from perisai.redact.redactor import Redactor

MAX_LINE_CHARS = 8 * 1024 * 1024  # a longer line is replaced, not held: it cannot be checked
WINDOW_CHARS = 1 << 20  # redact_stream reads a long line in windows of this many characters
BATCH_LINES = 4096  # plain-text lines classified together


def redact_stream(stream: IO[str], redactor: Redactor, window: int = WINDOW_CHARS) -> Iterator[str]:
    """Redacted pieces of ``stream``, newlines where it had them: each line as
    :func:`redact_lines` redacts it, and a line longer than ``window`` as text, a window at a
    time (cut at a blank where there is one), so no line is ever held whole. Plain-text lines
    are classified a batch at a time; blank lines pass straight through."""
    pending: list[tuple[str, bool]] = []  # (text, whether it still needs classifying)
    waiting = 0
    for text, ends_line in text_windows(stream, window):
        if not ends_line:
            yield from _flush(pending, redactor)
            waiting = 0
            yield redactor.text(text)
            continue
        if not text or text.isspace():
            pending.append((text + "\n", False))
        elif text.lstrip()[:1] in ("{", "["):
            (redacted,) = redact_lines([text], redactor)
            pending.append((redacted + "\n", False))
        else:
            pending.append((text, True))
            waiting += len(text)
        if len(pending) >= BATCH_LINES or waiting >= window:
            yield from _flush(pending, redactor)
            waiting = 0
    yield from _flush(pending, redactor)


def _flush(pending: list[tuple[str, bool]], redactor: Redactor) -> Iterator[str]:
    """The pending lines in order, the plain-text ones classified in one batch."""
    if not pending:
        return
    texts = [text for text, needs in pending if needs]
    found = iter(redactor.classifier.scan_lines(texts)) if texts else iter(())
    yield "".join(
        redactor.apply(text, next(found)) + "\n" if needs else text for text, needs in pending
    )
    pending.clear()


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
