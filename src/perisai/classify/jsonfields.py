"""Which JSON field each trigger hit falls in, read straight off raw JSON-lines bytes.

A service's log repeats the same fields over and over (one user's ``"msisdn": "6012…"`` on
every line they touch), so the JSON-lines fast path classifies *fields* and caches what each
raw field (``"key": "value"``, bytes) holds. This module is the step between hyperscan and that
cache: for every trigger hit, the field around it, found without parsing the line, and the
cached answer when there is one.

A one-time code is new on every line, so a field holding one never recurs as bytes; its
*template* does (``"sms_text": "Your TAC is 000000. …"``, every ASCII digit of the value read
as ``0``), and where the template step's rule holds (:func:`template_of`) what the field holds
is the template's answer.

It only reads what is certain: a line that starts with ``{`` and ends with ``}`` and holds no
backslash, where quotes alternate strictly between opening and closing. A hit in any other line
(escapes, arrays of scalars, a value trigger outside a string, a string that is itself JSON,
plain text) sends the whole line to the slow path, which reads everything.

:func:`locate` has two implementations with one contract: ``_jsonfields`` in C (built with the
package when a compiler is there; it turns this step from ~1.5 µs per hit in Python into a few
tens of nanoseconds) and the reference below, which the tests hold it to.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

# missing: (line start, key start, key end, value start, value end, field end, value hit);
# the field (the cache key) is data[key start - 1 : field end]; value hit is 1 when a value
# trigger fired inside the value, 0 when only the key's trigger found the field, TEMPLATED
# when only the template trigger fired there (see :func:`template_of`)
Missing = tuple[int, int, int, int, int, int, int]
TEMPLATED = 2


class Located(NamedTuple):
    """What :func:`locate` found in one block; the first three are parallel lists (no tuple
    per field: nothing for the cyclic GC to track in the hot loop)."""

    lines: list[int]  # line start of each cached field that holds personal data
    values: list[int]  # where its value starts (empty unless asked for)
    results: list[Any]  # its cached (non-empty) result
    missing: list[Missing]  # fields not in the cache
    fallback: list[int]  # starts of lines to read the slow way, each once, in order


_QUOTE = 0x22
_SPACE = b" \t\r"
_NUMBER = frozenset(b"0123456789.-+eE")
MAX_VALUE_BYTES = 64 * 1024  # the record walk reads a value's head only; such lines go slow


def line_starts(data: bytes) -> list[int]:
    """Where each line of ``data`` begins (an empty last line after a final newline not)."""
    starts = itertools.accumulate((len(line) + 1 for line in data.split(b"\n")), initial=0)
    return [start for start in starts if start < len(data)]


def texts_at(data: bytes, starts: list[int]) -> list[str]:
    """The lines of ``data`` that begin at ``starts``, decoded, in the order of ``starts``."""
    lines = data.count(b"\n") + 1 - data.endswith(b"\n")
    if len(starts) == lines and starts == sorted(starts):  # all of them, in order
        return data.decode("utf-8", "replace").split("\n")[:lines]
    texts = []
    for start in starts:
        end = data.find(b"\n", start)
        texts.append(data[start : len(data) if end < 0 else end].decode("utf-8", "replace"))
    return texts


def lines_to_slow_path(located: Located, slow: set[int]) -> Located:
    """``located`` with the lines starting at ``slow`` moved to the slow path whole."""
    keep = [n for n, line in enumerate(located.lines) if line not in slow]
    return Located(
        [located.lines[n] for n in keep],
        [located.values[n] for n in keep] if located.values else [],
        [located.results[n] for n in keep],
        [field for field in located.missing if field[0] not in slow],
        sorted(slow.union(located.fallback)),
    )


class PyHits:
    """Collects ``(trigger id, end offset)`` from hyperscan's match callback."""

    def __init__(self) -> None:
        self.hits: list[tuple[int, int]] = []

    def __call__(self, trigger: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
        self.hits.append((trigger, end))

    def clear(self) -> None:
        self.hits.clear()

    def __len__(self) -> int:
        return len(self.hits)

    def pairs(self) -> list[tuple[int, int]]:
        return list(self.hits)


Cache = dict[bytes, Any]


def py_locate(
    data: bytes,
    hits: PyHits,
    first_key_id: int,
    young: Cache,
    old: Cache,
    max_cached: int,
    want_values: bool,
    templates: Cache,
    template_trigger: int,
) -> Found:
    """The field of every hit in ``data`` (lines joined by newlines): cached answers, fields
    to classify, and the starts of lines to read the slow way.

    The cache is two generations: a field found in ``old`` moves up to ``young`` (its owner,
    :class:`~perisai.classify.fieldcache.FieldCache`, drops ``old`` when ``young`` is full).
    A field not cached whose hits are all ``template_trigger``'s (-1: none) is looked up by
    its template in ``templates`` (see :func:`template_of`)."""
    found: list[tuple[int, int, Any]] = []
    missing: list[Missing] = []
    fallback: list[int] = []
    size = len(data)
    if not size:
        return [], [], [], missing, fallback
    points = sorted(
        (_point(trigger, end, first_key_id, data), trigger >= first_key_id, trigger)
        for trigger, end in hits.hits
    )
    positions = [point[0] for point in points]
    line_start = line_end = -1
    line_ok = False
    cursor = quotes = last_quote = 0
    last_value = -1
    pending_key_only = False  # the last entry of `missing` was found by its key alone
    for at, is_key, _ in points:
        if at > line_end:  # a point on a line's newline (a value ending it) is that line's
            line_start = data.rfind(b"\n", 0, at) + 1
            line_end = data.find(b"\n", at)
            line_end = size if line_end < 0 else line_end
            line_ok = _readable(data, line_start, line_end)
            cursor, quotes, last_quote = line_start, 0, -1
            if not line_ok:
                fallback.append(line_start)
        if not line_ok:
            continue
        while True:  # count the quotes before `at`, remembering the last one
            q = data.find(b'"', cursor, at)
            if q < 0:
                break
            quotes += 1
            last_quote = q
            cursor = q + 1
        cursor = max(cursor, at)
        if not is_key and quotes % 2 and last_quote + 1 == last_value:
            # another hit in the value just read: do not walk it again, but a field found by
            # its key alone and still to classify is now known to hold a value hit too
            if pending_key_only:
                missing[-1] = (*missing[-1][:-1], 1)
            pending_key_only = False
            continue
        field = (
            _key_field(data, at, line_start, line_end, quotes, last_quote)
            if is_key
            else _value_field(data, at, line_start, line_end, quotes, last_quote)
        )
        if field is None:
            continue
        if field == _SLOW:
            line_ok = False
            fallback.append(line_start)
            continue
        key_start, key_end, value_start, value_end, field_end = field
        if value_start == last_value:
            continue
        last_value = value_start
        pending_key_only = False
        if field_end - key_start + 1 <= max_cached:
            field_bytes = data[key_start - 1 : field_end]
            if field_bytes in old and field_bytes not in young:
                young[field_bytes] = old.pop(field_bytes)
            if field_bytes in young:
                result = young[field_bytes]
                if result is not None:  # None: known to hold nothing
                    found.append((line_start, value_start, result))
                continue
            if _templated(data, points, positions, field, template_trigger):
                template = template_of(data, key_start, value_start, value_end, field_end)
                if template in templates:
                    result = templates[template]
                    if result is not None:
                        found.append((line_start, value_start, result))
                    continue
                missing.append((line_start, *field, TEMPLATED))
                continue
        missing.append(
            (line_start, key_start, key_end, value_start, value_end, field_end, int(not is_key))
        )
        pending_key_only = is_key
    if fallback:  # a line found unreadable late takes back what it yielded before
        slow = set(fallback)
        found = [f for f in found if f[0] not in slow]
        missing = [m for m in missing if m[0] not in slow]
    values = [f[1] for f in found] if want_values else []
    return [f[0] for f in found], values, [f[2] for f in found], missing, fallback


_SLOW = (-1, -1, -1, -1, -1)
_Field = tuple[int, int, int, int, int]


def _point(trigger: int, end: int, first_key_id: int, data: bytes) -> int:
    """A position inside the field: a key trigger ends just past its colon; a value trigger
    just past the value, or past the boundary character (the closing quote) after it."""
    if trigger >= first_key_id:
        at = end - 1
    elif end >= 2 and data[end - 1] == _QUOTE:
        at = end - 2
    else:
        at = end - 1
    return min(max(at, 0), len(data) - 1)


_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
# Digits joined by single spaces or dashes, as the ID numbers that a keyword gates in
# hyperscan are written (MyKad, IMEI, Aadhaar, NIK, Thai ID: twelve digits and more).
TEMPLATE_MAX_DIGIT_GROUP = 8


def template_of(data: bytes, key_start: int, value_start: int, value_end: int, end: int) -> bytes:
    """The field ``data[key_start - 1 : end]`` with every ASCII digit of its value read as 0.

    Sound as a cache key only under :func:`_templated`'s rule, which ``locate`` checks on every
    field it looks up this way. Two fields with one template differ in the values of digits
    alone; where every trigger hit in the field (key and value) is the template trigger's (the
    one-time code's, whose pattern, extraction, context and mask see digits as a class and never
    their values), no other detector runs there in the record walk either: a value trigger
    fires inside ``key: value`` exactly where it fires inside the raw value (the characters
    around a value are a quote or a space and a line end, none of them part of any value
    pattern), and a trigger that a keyword in the key gates may fire in ``key: value`` where it
    did not in the raw field (its keyword two characters nearer) only on a run of twelve digits
    or more, which no templated value holds. What the key alone tells is left to the caller,
    which keeps a template only for keys that tell nothing of digits (none, or a message key:
    its test counts words of letters and its mask says the length).
    """
    value = data[value_start:value_end].translate(_DIGITS_AS_ZERO)
    return data[key_start - 1 : value_start] + value + data[value_end:end]


def _templated(
    data: bytes,
    points: list[tuple[int, bool, int]],
    positions: list[int],
    field: _Field,
    template_trigger: int,
) -> bool:
    """Whether ``field`` may be answered by its template (see :func:`template_of`)."""
    key_start, _, value_start, value_end, field_end = field
    if template_trigger < 0 or field_end != value_end + 1:  # a string value only
        return False
    first = bisect.bisect_left(positions, key_start - 1)
    last = bisect.bisect_left(positions, field_end)
    in_value = False
    for at, is_key, trigger in points[first:last]:
        if is_key:
            continue
        if trigger != template_trigger:
            return False
        in_value = in_value or value_start <= at < value_end
    return in_value and _longest_digit_group(data, value_start, value_end) <= (
        TEMPLATE_MAX_DIGIT_GROUP
    )


def _longest_digit_group(data: bytes, start: int, end: int) -> int:
    """The most digits in ``data[start:end]`` joined by nothing or by one space or dash."""
    longest = run = 0
    for at in range(start, end):
        byte = data[at]
        if 0x30 <= byte <= 0x39:
            run += 1
            longest = max(longest, run)
        elif not (byte in b" -" and run and at + 1 < end and 0x30 <= data[at + 1] <= 0x39):
            run = 0
    return longest


def _readable(data: bytes, start: int, end: int) -> bool:
    line = data[start:end].strip(b" \t\r")
    return line[:1] == b"{" and line[-1:] == b"}" and b"\\" not in line


def _value_field(
    data: bytes, at: int, line_start: int, line_end: int, quotes: int, last_quote: int
) -> _Field | None:
    if quotes % 2 == 0:
        return _SLOW  # not inside a string: a number, or nothing this step can read
    value_start = last_quote + 1
    value_end = data.find(b'"', at, line_end)
    if value_end < 0:
        return _SLOW
    after = _skip(data, value_end + 1, line_end)
    if after < line_end and data[after] == ord(":"):
        return None  # the hit is in a key: keys are never classified
    colon = _skip_back(data, last_quote - 1, line_start)
    if colon < line_start or data[colon] != ord(":"):
        return _SLOW  # an array item, or a string where a key should be
    key_close = _skip_back(data, colon - 1, line_start)
    if key_close < line_start or data[key_close] != _QUOTE:
        return _SLOW
    return _string_field(data, key_close, value_start, value_end, line_start)


def _key_field(
    data: bytes, at: int, line_start: int, line_end: int, quotes: int, last_quote: int
) -> _Field | None:
    if quotes % 2 or last_quote < 0 or _skip(data, last_quote + 1, at) != at:
        return _SLOW
    key_close = last_quote
    value_at = _skip(data, at + 1, line_end)
    if value_at >= line_end:
        return _SLOW
    first = data[value_at]
    if first == _QUOTE:
        value_end = data.find(b'"', value_at + 1, line_end)
        if value_end < 0:
            return _SLOW
        return _string_field(data, key_close, value_at + 1, value_end, line_start)
    if first in _NUMBER:
        value_end = value_at
        while value_end < line_end and data[value_end] in _NUMBER:
            value_end += 1
        key_open = data.rfind(b'"', line_start, key_close)
        if key_open < 0:
            return _SLOW
        return key_open + 1, key_close, value_at, value_end, value_end
    if first == ord("["):
        return _SLOW  # an array: its items count under this key, the slow path walks them
    return None  # an object (its own keys fire) or true/false/null (never personal data)


def _string_field(
    data: bytes, key_close: int, value_start: int, value_end: int, line_start: int
) -> _Field:
    key_open = data.rfind(b'"', line_start, key_close)
    if key_open < 0 or value_end - value_start > MAX_VALUE_BYTES:
        return _SLOW
    head = _skip(data, value_start, value_end)
    if head < value_end and data[head] in b"{[":
        return _SLOW  # a string that may hold JSON: the record walk parses it
    return key_open + 1, key_close, value_start, value_end, value_end + 1


def _skip(data: bytes, at: int, end: int) -> int:
    while at < end and data[at] in _SPACE:
        at += 1
    return at


def _skip_back(data: bytes, at: int, start: int) -> int:
    while at >= start and data[at] in _SPACE:
        at -= 1
    return at


# What locate gives back: Located's fields as a plain tuple, as the C function builds it.
Found = tuple[list[int], list[int], list[Any], list[Missing], list[int]]

try:  # the compiled step: same contract, built with the package where a compiler is there
    from perisai.classify import _jsonfields

    COMPILED = True
except ImportError:  # pragma: no cover - exercised where the extension is not built
    COMPILED = False


def py_count_records(data: bytes) -> int:
    """Lines in ``data`` that are not blank."""
    return sum(1 for line in data.split(b"\n") if line.strip())


# The step itself: compiled where the extension is built, else the Python reference.
new_hits: Callable[[], PyHits] = _jsonfields.Hits if COMPILED else PyHits  # type: ignore[assignment]
locate: Callable[[bytes, PyHits, int, Cache, Cache, int, bool, Cache, int], Found] = (
    _jsonfields.locate if COMPILED else py_locate  # type: ignore[assignment]
)
count_records: Callable[[bytes], int] = _jsonfields.count_records if COMPILED else py_count_records
