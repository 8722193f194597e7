"""A key=value (logfmt) line read as the flat record it is, through the JSON-lines field path.

``ts=2024-05-02T08:11:40Z level=info msisdn=6012… msg="see you at 5"`` is a record of four
fields, so it is written as ``{"ts": "2024-05-02T08:11:40Z", "level": "info", "msisdn":
"6012…", "msg": "see you at 5"}`` and counted as a JSON line is: each raw field classified
once, as the record walk would, then answered from the cache, since a service's log repeats
its users' fields all day. A key is a keyword only inside its own field, as in JSON.

A line is written so when, after an optional prefix of free words (a timestamp, a level, a
logger: kept whole as the field ``"_"``), it is ``key=value`` pairs to its end, each value
bare or double-quoted. Any other line is passed through as written and read as plain text;
line count and order never change. Only counting (``perisai classify``) takes this path:
``redact`` reads lines as written, since it must mask them in place.

:func:`as_json` has two implementations with one contract: ``_jsonfields.logfmt_json`` in C
and :func:`py_as_json`, the reference the tests hold it to.
"""

from __future__ import annotations

from collections.abc import Callable

from perisai.classify import jsonfields

MAX_PAIRS = 256  # a line with more is read as text
_KEY_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_KEY = _KEY_START | frozenset(b"0123456789.-")
_BLANK = frozenset(b" \t\r")
_QUOTE, _BACKSLASH, _EQUALS = 0x22, 0x5C, 0x3D

Pair = tuple[int, int, int, int, int]  # key start, key end, value start, value end, end


def py_as_json(data: bytes) -> bytes:
    """``data`` (lines joined by newlines) with each logfmt line written as a JSON object."""
    return b"\n".join(_line(line) for line in data.split(b"\n"))


def _line(line: bytes) -> bytes:
    pairs: list[Pair] = []
    prefix_start = prefix_end = -1
    at, size = 0, len(line)
    while True:
        while at < size and line[at] in _BLANK:
            at += 1
        if at >= size:
            break
        pair = _pair(line, at)
        if pair is None:
            if pairs:
                return line  # free words after the pairs: text
            if prefix_start < 0:
                prefix_start = at
            while at < size and line[at] not in _BLANK:
                at += 1
            prefix_end = at
            continue
        if len(pairs) == MAX_PAIRS:
            return line
        pairs.append(pair)
        at = pair[4]
    if not pairs:
        return line
    fields = []
    if prefix_start >= 0:
        prefix = line[prefix_start:prefix_end].replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        fields.append(b'"_": "' + prefix + b'"')
    fields += [
        b'"' + line[k_start:k_end] + b'": "' + line[v_start:v_end] + b'"'
        for k_start, k_end, v_start, v_end, _ in pairs
    ]
    return b"{" + b", ".join(fields) + b"}"


def _pair(line: bytes, at: int) -> Pair | None:
    """The ``key=value`` pair starting at ``at``, or None."""
    size = len(line)
    if line[at] not in _KEY_START:
        return None
    key_end = at + 1
    while key_end < size and line[key_end] in _KEY:
        key_end += 1
    if key_end >= size or line[key_end] != _EQUALS:
        return None
    value = key_end + 1
    if value < size and line[value] == _QUOTE:
        end = value + 1
        while end < size and line[end] != _QUOTE:
            end += 2 if line[end] == _BACKSLASH else 1
        if end >= size or (end + 1 < size and line[end + 1] not in _BLANK):
            return None
        return at, key_end, value + 1, end, end + 1
    end = value
    while end < size and line[end] not in _BLANK:
        if line[end] == _QUOTE:
            return None
        end += 1
    return at, key_end, value, end, end


as_json: Callable[[bytes], bytes] = (
    jsonfields._jsonfields.logfmt_json if jsonfields.COMPILED else py_as_json  # type: ignore[attr-defined]
)
