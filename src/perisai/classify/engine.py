"""The classifier: hyperscan finds where to look, validators decide, context disambiguates.

Stage 1 scans whole batches of lines at once with every trigger in one hyperscan database
(compiled once per :class:`Classifier`); triggers carry their own boundaries, so a value fires
its trigger once and most look-alikes (digit runs in UUIDs, hashes, timestamps) never do.
Stage 2 runs each exact pattern only in windows around its trigger hits and keeps values its
validator accepts (results cached). Stage 3 requires a keyword shortly before a value, or a
telling record key, where the value has no checksum.

Three ways in, one engine: ``scan_text`` (one text, optional key), ``scan_record`` (a record's
fields, each as ``key: value``) and ``scan_json_lines`` (raw JSON lines, the fast path: no JSON
parsing; keys that tell are found by hyperscan too). On that path each hit is traced to its
field (``"key": "value"``, see :mod:`jsonfields`) and what the field holds is classified once,
as the record walk would, and cached by its raw bytes: a service's log repeats its fields
(a field with a one-time code, new on every line, is cached by its template instead).
"""

from __future__ import annotations

import bisect
import importlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, partial
from operator import itemgetter
from urllib.parse import quote

import hyperscan
import phonenumbers

from perisai.classify import jsonfields
from perisai.classify.detectors import (
    ALWAYS_VALID,
    CODE_WORD,
    CONTEXT_CHARS,
    DETECTORS,
    ID_AFTER_WORD,
    ID_WORD_BEFORE,
    ID_WORD_TRIGGER,
    NATIONAL_ID_MODULES,
    PHONE_AFTER_WORD,
    PHONE_KEYED_TRIGGER,
    PHONE_KEYS,
    PHONE_TRIGGER,
    PHONE_WORD_TRIGGER,
    PRIORITY,
    Detector,
)
from perisai.classify.fieldcache import MAX_CACHED_FIELD_BYTES, FieldCache
from perisai.classify.keyhints import (
    JSON_KEY_TRIGGERS,
    from_key,
    from_kind,
    key_kind,
    key_may_tell,
)
from perisai.classify.mask import mask_email, mask_phone, mask_text
from perisai.classify.match import EntityMatch, FieldMatches
from perisai.classify.records import iter_fields

MAX_TEXT_CHARS = 1 << 20  # a single text longer than this is classified on its head only
BATCH_BYTES = 1 << 20  # the line-oriented paths hand hyperscan about this much at a time
BATCH_LINES = 1 << 14  # and at most this many lines (per-line lists cost memory too)
WINDOW_SLACK = 2  # a trigger's end lies past the boundary character after its value
_PHONE_ID = len(DETECTORS)
_PHONE_KEYED_ID = _PHONE_ID + 1  # country-code digits without "+", after a phone key
_ID_WORD_ID = _PHONE_ID + 2  # a personal ID number after a word that names one
_PHONE_WORD_ID = _PHONE_ID + 3  # national digits after a word that says phone
_FIRST_KEY_ID = _PHONE_ID + 4  # then one trigger per kind of telling JSON key
_WHOLE_VALUE = ("MESSAGE_BODY", "PERSON")  # may overlap other entities: both are kept
# The trigger whose fields are remembered by template (``jsonfields.template_of``): the
# one-time code's, while its extraction, context and mask see digits only as a class.
_TEMPLATE_ID = next(
    (
        n
        for n, d in enumerate(DETECTORS)
        if not d.recurs and d.validate is ALWAYS_VALID and not d.keywords and not d.excluded_by
    ),
    -1,
)
_DIGIT_BLIND_KEY_KINDS = (None, "message")  # what these keys tell never rests on a digit

# A phone-number-shaped run, as PHONE_TRIGGER finds them: international after anything but
# a word or "+", else not glued to words, decimals, dates, UUIDs or paths (ASCII word
# characters only: a number between Chinese characters counts).
_PHONE_CANDIDATE = re.compile(
    r"(?:(?:(?<=\\[nrt])|(?<![A-Za-z0-9_+]))(?:\+|%2[Bb])"
    r"|(?:(?<=\\[nrt])|(?<![A-Za-z0-9_.@/+%-])(?<!\d:))(?:00)?)"  # not a time's seconds
    r"\(?\d[\d \-().]{5,18}\d(?![A-Za-wyz0-9_@]|x(?!\d)|[.:]\w|-\d)"
)
_KEYED_DIGITS = re.compile(
    r"(?i)(?<![\w\"'])(?:" + "|".join(PHONE_KEYS) + r")\s{0,2}[=:]\s{0,2}[\"']?"
    r"(\d[\d -]{6,16}\d)(?![\w.])"
)  # the key too: a window reaching back into the line before must not lend it one
# A JSON value right after its key's colon: a string, a number or the start of an array.
_JSON_VALUE = re.compile(r'\s*(?:"((?:[^"\\\n]|\\.){0,65536})"|(-?\d[\d.eE+-]{0,40})|(\[))')
# The same inside JSON that is itself a string value (`\"msisdn\": \"6012…\"`).
_EMBEDDED_VALUE = re.compile(r'\s*(?:\\"(.{0,65536}?)\\"|(-?\d[\d.eE+-]{0,40}))')
_DECODER = json.JSONDecoder()
_PLUS_ENCODED = re.compile(r"^%2[Bb]")
_NANP = re.compile(r"^[2-9]\d\d([-.])[2-9]\d\d\1\d{4}(?:x\d+)?$")
# A date is no number, whatever a region's plan allows: 02.05.2024, 02-05-24, 2024-05-02
_DATE = re.compile(
    r"^(?:(?:0?[1-9]|[12]\d|3[01])([./-])(?:0?[1-9]|1[0-2])\1(?:\d{4}|\d{2})"
    r"|(?:0?[1-9]|1[0-2])([./-])(?:0?[1-9]|[12]\d|3[01])\2(?:\d{4}|\d{2})"
    r"|\d{4}([./-])(?:0?[1-9]|1[0-2])\3(?:0?[1-9]|[12]\d|3[01]))$"
)
# Where most fields of a block are new (a dump of distinct records, not a service's log), the
# lines holding them are read the slow way, a line at a time: cheaper than field by field when
# the cache cannot help, and the same answers.
MOSTLY_NEW = 0.5
SLOW_CHECK_EVERY = 8  # after such a block, the next ones go the slow way whole, until this one
_POSITION = itemgetter(1, 2)  # an EntityMatch's (start, end)
_NOT_CONTINUATION = bytes(b for b in range(256) if b & 0xC0 != 0x80)  # delete all but 10xxxxxx

# (start, end, entity, masked, confidence, why) in batch offsets, before lines are assigned.
_Found = tuple[int, int, str, str, float, str]


class Classifier:
    """Finds personal data in text and records; build once, reuse (the database is compiled
    in the constructor)."""

    def __init__(self, regions: tuple[str, ...] = ("MY",)) -> None:
        self.regions = regions or ("MY",)
        expressions = [d.gated_trigger for d in DETECTORS]
        expressions += [PHONE_TRIGGER, PHONE_KEYED_TRIGGER, ID_WORD_TRIGGER, PHONE_WORD_TRIGGER]
        expressions += [expression for _, expression in JSON_KEY_TRIGGERS]
        caseless = [d.caseless or bool(d.keywords) for d in DETECTORS] + [False] + [True] * 3
        caseless += [True] * len(JSON_KEY_TRIGGERS)
        self._database = hyperscan.Database()
        self._database.compile(
            expressions=[e.encode() for e in expressions],
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=[
                hyperscan.HS_FLAG_MULTILINE | (hyperscan.HS_FLAG_CASELESS if c else 0)
                for c in caseless
            ],
        )
        self._phone_cache = lru_cache(maxsize=65536)(self._phone_in)  # numbers repeat in logs
        self._keyed_cache = lru_cache(maxsize=65536)(self._keyed_in)
        self._id_checks = [
            check for region in self.regions for check in _id_checks(region)
        ]  # the regions' own personal ID numbers, as python-stdnum validates them
        self._id_cache = lru_cache(maxsize=65536)(self._id_in)
        self._national_cache = lru_cache(maxsize=65536)(partial(_valid_mask, regions=self.regions))
        self._fields = FieldCache()
        self._slow_streak = 0  # blocks read the slow way in a row (see MOSTLY_NEW)

    # ----- public API -------------------------------------------------------------------

    def scan_text(self, text: str, key: str | None = None) -> list[EntityMatch]:
        """Every entity in ``text``; ``key`` (a record's field name) adds context."""
        text = text[:MAX_TEXT_CHARS]
        if not key:
            return self._scan_decoding([text])[0]
        line = f"{key}: {text}"
        return _in_value(self._scan_batch([line])[0], len(line) - len(text), text, key)

    def scan_record(self, record: object) -> list[tuple[str | None, EntityMatch]]:
        """Walk a record (dict, list, JSON text, scalars); key names serve as hints.

        All fields go through hyperscan in one pass, each as ``key: value`` so that a key is
        keyword context for its value; spans index the field's value.
        """
        fields = list(iter_fields(record))
        if not fields:
            return []
        lines = [f"{key}: {text}" if key else text for key, text in fields]
        found: list[tuple[str | None, EntityMatch]] = []
        for (key, text), line, matches in zip(fields, lines, self._scan_batch(lines), strict=True):
            in_value = _in_value(matches, len(line) - len(text), text, key)
            found.extend((key, match) for match in in_value)
        return found

    def scan_lines(self, lines: Iterable[str]) -> Iterator[list[EntityMatch]]:
        """One list of matches per line of plain text, scanning batches of lines in one pass.
        A line with percent-encoding (a URL's query) is read decoded too; what is found there
        is mapped back onto the encoded text, its mask encoded the same way."""
        for batch in _batches(lines):
            yield from self._scan_decoding(batch)

    def _scan_decoding(self, batch: list[str]) -> list[list[EntityMatch]]:
        """:meth:`_scan_batch`, each line with percent-encoding read decoded as well."""
        decoded = [_percent_decoded(line) for line in batch]
        extra = [d for d in decoded if d is not None]
        found = self._scan_batch(batch + [text for text, _ in extra])
        more = iter(found[len(batch) :])
        out = []
        for line, plain, matches in zip(batch, decoded, found, strict=False):
            if plain is not None:
                matches = _resolve(matches + _mapped(next(more), line, plain[1]))
            out.append(matches)
        return out

    def scan_json_lines(self, lines: Iterable[str]) -> Iterator[list[EntityMatch]]:
        """One list of matches per JSON line, spans indexing the raw line; the fast path.

        No line is parsed: values are matched as written, a keyword counts only within its own
        field (``"key": "value"``), and keys that tell (``msisdn``, ``lat``, ``body``, ``name``)
        are found by hyperscan with the rest, also in JSON escaped inside a string. Lines that
        are not JSON are classified as plain text.
        """
        for batch in _batches(lines):
            yield from self._json_lines_batch(batch)

    def scan_json_block(self, data: bytes) -> tuple[list[int], list[FieldMatches]]:
        """Personal data in ``data``, whole JSON lines as bytes (invalid UTF-8 is replaced),
        as two parallel lists: line starts, and what one field holds (spans relative to its
        value) or one line read the slow way (spans relative to the line).

        The cheapest way in, for counting (``perisai classify``): no per-line lists, no span
        arithmetic, a recurring field is one cached object. Lines are classified as
        :meth:`scan_json_lines` classifies them.
        """
        located = self._json_fields(data, want_values=False)
        lines, results = located.lines, located.results
        if located.fallback:
            texts = jsonfields.texts_at(data, located.fallback)
            for start, matches in zip(located.fallback, self._scan_mixed(texts), strict=True):
                if matches:
                    lines.append(start)
                    results.append(self._fields.held(tuple(matches)))
        return lines, results

    def _scan_mixed(self, texts: list[str]) -> list[list[EntityMatch]]:
        """Lines read the slow way: JSON ones as JSON (a keyword counts in its own field),
        plain text as text (a text file's lines that are no key=value record)."""
        kinds: tuple[list[int], list[int]] = ([], [])  # plain text, JSON
        for n, text in enumerate(texts):
            kinds[text.lstrip().startswith("{")].append(n)
        if not kinds[0]:
            return self._scan_batch(texts, json_lines=True)
        out: list[list[EntityMatch]] = [[] for _ in texts]
        for as_json, indices in enumerate(kinds):
            if indices:
                found = self._scan_batch([texts[n] for n in indices], json_lines=bool(as_json))
                for n, matches in zip(indices, found, strict=True):
                    out[n] = matches
        return out

    # ----- the JSON-lines field path ----------------------------------------------------

    def _json_lines_batch(self, lines: list[str]) -> list[list[EntityMatch]]:
        """Matches per line, spans indexing the line, for a batch of JSON lines."""
        data = "\n".join(lines).encode("utf-8", "surrogatepass")
        if data.count(b"\n") != len(lines) - 1:  # a "line" holding newlines: one line each
            lines = [line.replace("\n", " ") for line in lines]
            data = "\n".join(lines).encode("utf-8", "surrogatepass")
        located = self._json_fields(data)
        index_of = {start: n for n, start in enumerate(jsonfields.line_starts(data))}
        per_line: list[list[EntityMatch]] = [[] for _ in lines]
        ascii_only = data.isascii()
        found = sorted(zip(located.values, located.lines, located.results, strict=True))
        for value_start, line_start, (matches, _) in found:
            offset = value_start - line_start
            if not ascii_only:
                offset = len(data[line_start:value_start].decode("utf-8", "surrogatepass"))
            per_line[index_of[line_start]].extend(
                EntityMatch(entity, start + offset, end + offset, masked, confidence, why)
                for entity, start, end, masked, confidence, why in matches
            )
        if located.fallback:
            indices = [index_of[start] for start in located.fallback]
            slow_lines = [lines[n] for n in indices]
            for n, matches in zip(
                indices, self._scan_batch(slow_lines, json_lines=True), strict=True
            ):
                per_line[n] = matches
        return per_line

    def _json_fields(self, data: bytes, want_values: bool = True) -> jsonfields.Located:
        """Stage 1 over ``data``, each hit traced to its field, each field classified once:
        the fields with personal data, and the starts of lines to read the slow way."""
        if 0 < self._slow_streak < SLOW_CHECK_EVERY:  # fields did not recur a block ago
            self._slow_streak += 1
            return jsonfields.Located([], [], [], [], jsonfields.line_starts(data))
        hits = jsonfields.new_hits()
        self._database.scan(data, match_event_handler=hits)
        fields = self._fields
        located = jsonfields.Located(
            *jsonfields.locate(
                data,
                hits,
                _FIRST_KEY_ID,
                fields.young,
                fields.old,
                MAX_CACHED_FIELD_BYTES,
                want_values,
                fields.templates,
                _TEMPLATE_ID,
            )
        )
        fields.settle()
        # fields new as bytes whose template may recur (one-time codes) count as known
        new_values = [field for field in located.missing if field[6] == 1]
        self._slow_streak = 0
        if len(new_values) > MOSTLY_NEW * (len(located.lines) + len(located.missing)):
            self._slow_streak = 1
            located = jsonfields.lines_to_slow_path(located, {field[0] for field in new_values})
        for line_start, value_start, result in self._classify_fields(data, located.missing):
            located.lines.append(line_start)
            if want_values:
                located.values.append(value_start)
            located.results.append(result)
        return located

    def _classify_fields(
        self, data: bytes, missing: list[jsonfields.Missing]
    ) -> Iterator[tuple[int, int, FieldMatches]]:
        """Fields not in the cache, classified as the record walk classifies a field, then
        remembered: all stages over ``key: value`` (one batch), or, where no value trigger
        fired inside the value (only its key's did), what the key tells alone, which is all
        the record walk would find there too."""
        pairs = [
            (
                data[k_start:k_end].decode("utf-8", "replace"),
                data[v_start:v_end].decode("utf-8", "replace"),
            )
            for _, k_start, k_end, v_start, v_end, _, _ in missing
        ]
        scanned = [n for n, field in enumerate(missing) if field[6]]
        lines = [f"{key}: {value}" if key else value for key, value in (pairs[n] for n in scanned)]
        in_values: list[list[EntityMatch]] = [[] for _ in missing]
        for n, line, matches in zip(scanned, lines, self._scan_batch(lines), strict=True):
            key, value = pairs[n]
            in_values[n] = _in_value(matches, len(line) - len(value), value, key or None)
        for field, (key, value), in_value in zip(missing, pairs, in_values, strict=True):
            line_start, k_start, _, v_start, v_end, f_end, value_hit = field
            held = tuple(in_value if value_hit else from_key(value, key or None))
            if value_hit == jsonfields.TEMPLATED and key_kind(key) in _DIGIT_BLIND_KEY_KINDS:
                template = jsonfields.template_of(data, k_start, v_start, v_end, f_end)
                result = self._fields.remember_template(template, held)
            else:
                result = self._fields.remember(data[k_start - 1 : f_end], held)
            if result is not None:
                yield line_start, v_start, result

    # ----- stages -----------------------------------------------------------------------

    def _scan_batch(self, lines: list[str], json_lines: bool = False) -> list[list[EntityMatch]]:
        """Stages 1 to 3 over ``lines`` joined into one block; matches per line."""
        block = "\n".join(lines)
        starts = list(itertools.accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
        found: list[_Found] = []
        hits = self._hits(block)
        for detector_id, group in itertools.groupby(hits, key=itemgetter(0)):
            ends = [end for _, end in group]
            if detector_id == _PHONE_ID:
                self._phones(block, ends, found)
            elif detector_id == _PHONE_KEYED_ID:
                self._keyed_phones(block, ends, found)
            elif detector_id == _ID_WORD_ID:
                self._worded_ids(block, ends, found)
            elif detector_id == _PHONE_WORD_ID:
                self._worded_phones(block, ends, found)
            elif detector_id >= _FIRST_KEY_ID:
                if json_lines:
                    kind = JSON_KEY_TRIGGERS[detector_id - _FIRST_KEY_ID][0]
                    _from_json_keys(block, ends, kind, found)
            else:
                _extract(DETECTORS[detector_id], block, ends, json_lines, found)
        per_line: list[list[EntityMatch]] = [[] for _ in lines]
        for start, end, entity, masked, confidence, why in found:
            index = bisect.bisect_right(starts, start) - 1
            base = starts[index]
            if end <= base + len(lines[index]):
                per_line[index].append(
                    EntityMatch(entity, start - base, end - base, masked, confidence, why)
                )
        return [_resolve(matches) for matches in per_line]

    def _hits(self, block: str) -> list[tuple[int, int]]:
        """Stage 1: ``(trigger id, end offset)`` of every trigger hit, sorted, in characters."""
        data = block.encode("utf-8", "surrogatepass")
        hits: list[tuple[int, int]] = []
        add = hits.append
        self._database.scan(data, match_event_handler=lambda i, _f, end, _g, _c: add((i, end)))
        if len(data) != len(block):
            # Non-ASCII: a byte offset less the UTF-8 continuation bytes before it is the
            # character offset; one pass over the hits in order of their ends.
            hits.sort(key=itemgetter(1))
            continuation = previous = 0
            for n, (trigger, end) in enumerate(hits):
                continuation += len(data[previous:end].translate(None, _NOT_CONTINUATION))
                previous = max(previous, end)
                hits[n] = (trigger, end - continuation)
        hits.sort()
        return hits

    def _phones(self, block: str, ends: list[int], found: list[_Found]) -> None:
        for start, end in _windows(ends, 26, 4, len(block)):
            for candidate in _PHONE_CANDIDATE.finditer(block, start, end):
                text = candidate.group().rstrip(" -.(")
                if block[candidate.end() : candidate.end() + 1] == "/" and text[0] not in "+%":
                    continue  # a national-looking run in a path is more often an id
                at = candidate.start()
                if ID_WORD_BEFORE.search(block, max(0, at - 64), at):
                    continue  # "social security number is 070387-1208": an ID, valid or not
                masked = self._phone_cache(_PLUS_ENCODED.sub("+", text, count=1))
                if masked:
                    found.append((at, at + len(text), "PHONE", masked, 0.9, "phonenumbers"))

    def _keyed_phones(self, block: str, ends: list[int], found: list[_Found]) -> None:
        """Digits after a phone key: country-code digits, valid with a ``+`` before them, or
        a national number of a region with no trunk prefix (Singapore's ``8127 3585``)."""
        judge = self._keyed_cache
        _read_values(block, ends, (30, 1), _KEYED_DIGITS, lambda m: judge(m[1]), found, _PHONE_KEY)

    def _worded_phones(self, block: str, ends: list[int], found: list[_Found]) -> None:
        """A national number after a word that says phone, valid in one of the regions (a
        code's word between them makes it a code)."""

        def judge(match: re.Match[str]) -> str | None:
            return None if CODE_WORD.search(match[1]) else self._national_cache(match[2])

        _read_values(block, ends, (48, 1), PHONE_AFTER_WORD, judge, found, _PHONE_WORD)

    def _worded_ids(self, block: str, ends: list[int], found: list[_Found]) -> None:
        """A personal ID number of one of the regions after a word that names one."""
        if self._id_checks:
            judge = self._id_cache
            _read_values(block, ends, (80, 26), ID_AFTER_WORD, lambda m: judge(m[1]), found, _ID)

    def _id_in(self, value: str) -> str | None:
        """The mask of ``value`` if a region's ID check accepts it, or accepts it without its
        last groups ("387 124 498" is one SIN; "1590151702659 72" a NIR with its key)."""
        groups = value.split(" ")
        for text in (" ".join(groups[:n]) for n in range(len(groups), 0, -1)):
            if any(is_valid(text) for is_valid in self._id_checks):
                return mask_text(text)
        return None

    def _keyed_in(self, digits: str) -> str | None:
        bare = re.sub(r"[ -]", "", digits)
        if len(bare) >= 10 and (masked := self._phone_cache("+" + bare)):
            return masked
        return _valid_mask(digits, self.regions)

    def _phone_in(self, candidate: str) -> str | None:
        """The mask of ``candidate`` if it is a valid number in one of the regions.

        Like phonenumbers' VALID leniency, a number written without a country code must carry
        its national trunk prefix (``012-…`` in Malaysia), or be in parentheses.
        """
        if candidate.count("(") != candidate.count(")"):
            return None
        international = candidate.startswith(("+", "00"))
        if not international and not candidate.startswith(("0", "(")):
            if _NANP.match(candidate) and (nanp := [r for r in self.regions if r in ("US", "CA")]):
                return _valid_mask(candidate, nanp[:1])
            return None
        # with a country code the first region decides: the others will not read it otherwise
        return _valid_mask(candidate, self.regions[:1] if international else self.regions)


@lru_cache(maxsize=64)
def _id_checks(region: str) -> tuple[Callable[[str], bool], ...]:
    """python-stdnum's validators of ``region``'s personal ID numbers (none: not covered)."""
    return tuple(
        importlib.import_module(f"stdnum.{name}").is_valid
        for name in NATIONAL_ID_MODULES.get(region, ())
    )


# What a value read by :func:`_read_values` is: entity, confidence, why
_PHONE_KEY = ("PHONE", 0.85, "phone key")
_PHONE_WORD = ("PHONE", 0.8, "phone word")
_ID = ("NATIONAL_ID", 0.85, "id word")


def _read_values(
    block: str,
    ends: list[int],
    reach: tuple[int, int],
    pattern: re.Pattern[str],
    judge: Callable[[re.Match[str]], str | None],
    found: list[_Found],
    what: tuple[str, float, str],
) -> None:
    """``pattern``'s matches in windows reaching ``reach`` (before, after) around the hits;
    where ``judge`` masks one, its last group is a value of the entity ``what`` names."""
    entity, confidence, why = what
    for start, end in _windows(ends, *reach, len(block)):
        for candidate in pattern.finditer(block, start, end):
            masked = judge(candidate)
            if masked:
                at, stop = candidate.span(candidate.lastindex or 0)
                found.append((at, stop, entity, masked, confidence, why))


def _valid_mask(text: str, regions: tuple[str, ...] | list[str]) -> str | None:
    """The mask of ``text`` read as a number of the first region where it is valid; a date
    is none, whatever a region's plan allows."""
    if _DATE.match(text):
        return None
    for region in regions:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return mask_phone(number)
    return None


def _extract(
    detector: Detector,
    block: str,
    ends: list[int],
    json_lines: bool,
    found: list[_Found],
) -> None:
    """Stage 2 and 3 for one detector: exact matches near its hits, validated, in context."""
    limit = len(block)
    for match in _matches(detector, block, ends, limit):
        value = match.group(detector.group)
        if detector.validate is not ALWAYS_VALID and not _validated(detector.name, value):
            continue
        v_start, v_end = match.span(detector.group)
        if detector.keyword_pattern or detector.excluded_pattern:
            context = _context(block, v_start, json_lines)
            if detector.keyword_pattern and not detector.keyword_pattern.search(context):
                continue
            if detector.excluded_pattern and detector.excluded_pattern.search(context):
                continue
        mask = mask_value if detector.recurs else _mask  # caching a one-off costs
        masked = mask(detector.entity, value)
        found.append((v_start, v_end, detector.entity, masked, detector.confidence, detector.name))


def _matches(
    detector: Detector, block: str, ends: list[int], limit: int
) -> Iterator[re.Match[str]]:
    """The exact pattern's matches near the hits: every match in each merged window, or, for
    a detector whose value runs long after its hit (a quoted message), the first match from
    each hit only, so the rest of a long window is not searched again for nothing."""
    if not detector.one_per_hit:
        for start, end in _windows(ends, detector.before + WINDOW_SLACK, detector.after, limit):
            yield from detector.extract.finditer(block, start, end)
        return
    searched = 0
    for end in ends:
        start = max(searched, end - detector.before - WINDOW_SLACK)
        match = detector.extract.search(block, start, min(limit, end + detector.after))
        if match is not None:
            searched = match.end()
            yield match


_PERCENT = re.compile(r"%([0-7][0-9A-Fa-f])")  # ASCII only: bytes of UTF-8 stay encoded
_FORM_QUERY = re.compile(r"[?&][\w.-]{1,40}=[^\s&]*\+")  # a query value with a "+" in it
_QUERY = re.compile(r"\?[^\s\"']+")  # a URL's query, up to the blank or quote that ends it


def _percent_decoded(line: str) -> tuple[str, list[int]] | None:
    """``line`` with its ASCII %XX escapes decoded, and for each decoded character where it
    starts in ``line`` (one more entry: the end); None when there is nothing to decode.

    In a form-encoded query a blank is written "+" (browsers do: ``call+me+at+%2B4366…``),
    so there a "+" as written reads as a blank; one meant as a plus is still read in the
    line as written."""
    form = "+" in line and _FORM_QUERY.search(line) is not None
    if not form and ("%" not in line or not _PERCENT.search(line)):
        return None
    if form:  # "+" as a blank inside the query only, one for one
        line = _QUERY.sub(lambda query: query[0].replace("+", " "), line)
    out: list[str] = []
    where: list[int] = []
    cursor = 0
    for escape in _PERCENT.finditer(line):
        out.append(line[cursor : escape.start()])
        where.extend(range(cursor, escape.start()))
        out.append(chr(int(escape[1], 16)))
        where.append(escape.start())
        cursor = escape.end()
    out.append(line[cursor:])
    where.extend(range(cursor, len(line) + 1))
    return "".join(out), where


def _mapped(matches: list[EntityMatch], line: str, where: list[int]) -> list[EntityMatch]:
    """Matches in a decoded line, onto the encoded one (masks encoded where it was)."""
    out = []
    for m in matches:
        start, end = where[m.start], where[m.end]
        encoded = "%" in line[max(0, start - 3) : end + 3]  # inside a URL: keep it one
        masked = quote(m.masked, safe="*<>,()") if encoded else m.masked
        out.append(EntityMatch(m.entity, start, end, masked, m.confidence, m.why))
    return out


def _context(block: str, start: int, json_lines: bool) -> str:
    """Lower-cased words that may tell what the value at ``start`` is: the text shortly before
    it on its line (a record's field starts with its key; in a JSON line, from its own key on)."""
    before = block[max(0, start - CONTEXT_CHARS) : start]
    before = before[before.rfind("\n") + 1 :]
    if json_lines:
        before = before[max(before.rfind(', "'), before.rfind('{"'), 0) :]
    return before.lower().replace("_", " ")


def _in_value(
    matches: list[EntityMatch], offset: int, text: str, key: str | None
) -> list[EntityMatch]:
    """Matches in a ``key: value`` line moved onto the value, plus what the key alone tells."""
    in_value = [
        EntityMatch(m.entity, m.start - offset, m.end - offset, m.masked, m.confidence, m.why)
        for m in matches
        if m.start >= offset
    ]
    if key and key_may_tell(key):
        in_value = _resolve(in_value + from_key(text, key))
    return in_value


def _from_json_keys(block: str, ends: list[int], kind: str, found: list[_Found]) -> None:
    """Stage 3 on raw JSON: the value after each key of one telling kind, judged by the key."""
    for end in ends:
        escaped = block[block.rfind('"', 0, end) - 1] == "\\"
        value = (_EMBEDDED_VALUE if escaped else _JSON_VALUE).match(block, end)
        if value is None:
            continue
        if value.lastindex == 3:  # an array: its scalar items count under the same key
            _from_json_array(block, value.start(3), kind, found)
            continue
        group = value.lastindex or 1
        raw = value.group(group)
        text = _unescape(raw) if group == 1 and "\\" in raw else raw
        v_start, v_end = value.span(group)
        for match in from_kind(text, kind):
            found.append((v_start, v_end, match.entity, match.masked, match.confidence, match.why))


def _from_json_array(block: str, at: int, kind: str, found: list[_Found]) -> None:
    line_end = block.find("\n", at)
    text = block[at : len(block) if line_end < 0 else line_end]
    try:
        items, length = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        return
    if not isinstance(items, list):
        return
    scalars = [item for item in items if not isinstance(item, dict)]  # dicts: their own keys
    for _, value in iter_fields(scalars):
        for match in from_kind(value, kind):
            found.append((at, at + length, match.entity, match.masked, match.confidence, match.why))


def _unescape(raw: str) -> str:
    try:
        text = json.loads(f'"{raw}"')
    except ValueError:
        return raw
    return text if isinstance(text, str) else raw


def _batches(lines: Iterable[str]) -> Iterator[list[str]]:
    """Lines grouped into batches of about BATCH_BYTES (a line counts its newline, so blank
    lines fill a batch too) and at most BATCH_LINES, each line cut at MAX_TEXT_CHARS."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line[:MAX_TEXT_CHARS])
        size += len(line) + 1
        if size >= BATCH_BYTES or len(batch) >= BATCH_LINES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _resolve(matches: list[EntityMatch]) -> list[EntityMatch]:
    """Overlapping claims: the more specific entity, then the longer match, wins.

    Kept spans never overlap, so they stay sorted in two parallel lists and each claim is
    checked against its neighbours only (a 1 MiB line with 40,000 numbers stays fast).
    """
    if len(matches) < 2:
        return matches
    by_position = sorted(matches, key=_POSITION)
    if all(a.end <= b.start for a, b in itertools.pairwise(by_position)):
        return by_position
    kept: list[EntityMatch] = []
    starts: list[int] = []
    ends: list[int] = []
    wholes: list[EntityMatch] = []  # a message may hold a number: both kept, each once
    for match in sorted(matches, key=lambda m: (PRIORITY[m.entity], m.start - m.end, m.start)):
        if match.entity in _WHOLE_VALUE:
            if not any(
                w.entity == match.entity and w.start < match.end and match.start < w.end
                for w in wholes
            ):
                wholes.append(match)
                kept.append(match)
            continue
        at = bisect.bisect_left(starts, match.start)
        if (at < len(starts) and starts[at] < match.end) or (at > 0 and ends[at - 1] > match.start):
            continue
        starts.insert(at, match.start)
        ends.insert(at, match.end)
        kept.append(match)
    return sorted(kept, key=_POSITION)


@lru_cache(maxsize=65536)
def _validated(name: str, value: str) -> bool:
    return _BY_NAME[name].validate(value)


_BY_NAME = {detector.name: detector for detector in DETECTORS}


def _windows(ends: list[int], before: int, after: int, limit: int) -> Iterator[tuple[int, int]]:
    """Merged ``[end-before, end+after)`` windows around sorted trigger hits."""
    current: tuple[int, int] | None = None
    for end in ends:
        start, stop = max(0, end - before), min(limit, end + after)
        if current and start <= current[1]:
            current = (current[0], max(current[1], stop))
        else:
            if current:
                yield current
            current = (start, stop)
    if current:
        yield current


def _mask(entity: str, value: str) -> str:
    """A mask that keeps a hint of the value and nothing that identifies anyone."""
    if entity == "EMAIL":
        if "@" not in value:  # percent-encoded: masked, and encoded as it was
            return mask_email(value.replace("%40", "@")).replace("@", "%40")
        return mask_email(value)
    if entity == "CREDIT_CARD":
        digits = re.sub(r"\D", "", value)
        return f"{digits[:1]}*** **** **** {digits[-4:]}"
    if entity == "IP_ADDRESS":
        return value.rsplit(".", 1)[0] + ".*" if "." in value else value.split(":", 1)[0] + ":…"
    if entity == "SECRET":
        return f"{value[:4]}…<secret, {len(value)} chars>"
    if entity == "MESSAGE_BODY":  # nothing of what someone wrote
        return f"<message, {len(value)} chars>"
    if entity == "OTP_CODE":  # any digit kept would shrink what is left to guess
        return f"<code, {len(value)} digits>"
    if entity == "PERSON":  # as the name keys mask it
        return mask_text(value.strip(), keep=1)
    return mask_text(value)


mask_value = lru_cache(maxsize=65536)(_mask)
mask_value.__doc__ = _mask.__doc__
