"""The classifier: hyperscan finds where to look, validators decide, context disambiguates.

Stage 1 scans whole batches of bytes once with every trigger in one hyperscan database
(compiled once per :class:`Classifier`). Stage 2 runs each exact pattern only in windows around
its trigger hits and keeps values its validator accepts (results cached). Stage 3 requires a
keyword shortly before a value, or a telling record key, where the value has no checksum.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import hyperscan
import phonenumbers

from perisai.classify.detectors import DETECTORS, PHONE_TRIGGER, PRIORITY
from perisai.classify.mask import mask_email, mask_phone, mask_text
from perisai.classify.records import iter_fields

CONTEXT_CHARS = 32  # how far before a value a keyword may stand
MAX_TEXT_CHARS = 1 << 20  # a single value longer than this is classified on its head only
BATCH_BYTES = 1 << 20  # scan_lines hands hyperscan about this much at a time
_PHONE_ID = len(DETECTORS)

# A phone-number-shaped run not glued to words, decimals, dates, UUIDs or paths.
_PHONE_CANDIDATE = re.compile(r"(?<![\w.:/@=-])(?:\+|00)?\(?\d[\d \-().]{5,18}\d(?![\w.:/@]|-\d)")
_PHONE_KEY = re.compile(r"(?i)(msisdn|phone|mobile|tel|telephone|hp|sender|recipient|to|from)$")
_LAT_KEY = re.compile(r"(?i)^(lat|latitude|gps_lat)$")
_LON_KEY = re.compile(r"(?i)^(lon|lng|long|longitude|gps_lon|gps_lng)$")
_MESSAGE_KEY = re.compile(r"(?i)^(msg|message|body|text|content|chat|plaintext|message_text)$")
_PERSON_KEY = re.compile(
    r"(?i)^(name|full_?name|sender_?name|recipient_?name|display_?name|"
    r"first_?name|last_?name|customer_?name|nama)$"
)
_PERSON_VALUE = re.compile(r"^[A-Z][a-zA-Z'.-]+(?: (?:bin|binti|a/l|a/p|[A-Z][a-zA-Z'.-]*)){1,4}$")
_WORD = re.compile(r"[A-Za-z\u00C0-\u024F]{2,}")


@dataclass(frozen=True)
class EntityMatch:
    """One entity in one text: type, span, masked form, how sure, and why."""

    entity: str
    start: int
    end: int
    masked: str
    confidence: float = 0.9
    why: str = ""


class Classifier:
    """Finds personal data in text and records; build once, reuse (the database is compiled
    in the constructor)."""

    def __init__(self, regions: tuple[str, ...] = ("MY",)) -> None:
        self.regions = regions or ("MY",)
        self._database = hyperscan.Database()
        triggers = [d.trigger.encode() for d in DETECTORS] + [PHONE_TRIGGER.encode()]
        flags = [hyperscan.HS_FLAG_CASELESS if d.caseless else 0 for d in DETECTORS] + [0]
        self._database.compile(
            expressions=triggers,
            ids=list(range(len(triggers))),
            elements=len(triggers),
            flags=flags,
        )
        self._phone_cache = lru_cache(maxsize=65536)(self._phone_in)  # numbers repeat in logs

    # ----- public API -------------------------------------------------------------------

    def scan_text(self, text: str, key: str | None = None) -> list[EntityMatch]:
        """Every entity in ``text``; ``key`` (a record's field name) adds context."""
        text = text[:MAX_TEXT_CHARS]
        return self._resolve(self._block(text, key) + self._from_key(text, key))

    def scan_record(self, record: object) -> list[tuple[str | None, EntityMatch]]:
        """Walk a record (dict, list, JSON text, scalars); key names serve as hints.

        All fields go through hyperscan in one pass, each as ``key: value`` so that a key is
        keyword context for its value.
        """
        fields = list(iter_fields(record))
        if not fields:
            return []
        lines = [f"{key}: {text}" if key else text for key, text in fields]
        found: list[tuple[str | None, EntityMatch]] = []
        for (key, text), line, matches in zip(fields, lines, self._scan_batch(lines), strict=True):
            offset = len(line) - len(text)
            in_value = [
                EntityMatch(
                    m.entity, m.start - offset, m.end - offset, m.masked, m.confidence, m.why
                )
                for m in matches
                if m.start >= offset
            ]
            in_value.extend(self._from_key(text, key))
            found.extend((key, m) for m in self._resolve(in_value))
        return found

    def scan_lines(self, lines: Iterable[str]) -> Iterator[list[EntityMatch]]:
        """One list of matches per input line, scanning batches of lines in one pass."""
        batch: list[str] = []
        size = 0
        for line in lines:
            batch.append(line[:MAX_TEXT_CHARS])
            size += len(line)
            if size >= BATCH_BYTES:
                yield from self._scan_batch(batch)
                batch, size = [], 0
        if batch:
            yield from self._scan_batch(batch)

    # ----- stages -----------------------------------------------------------------------

    def _scan_batch(self, lines: list[str]) -> Iterator[list[EntityMatch]]:
        block = "\n".join(lines)
        starts: list[int] = []
        offset = 0
        for line in lines:
            starts.append(offset)
            offset += len(line) + 1
        per_line: list[list[EntityMatch]] = [[] for _ in lines]
        for match in self._block(block, None):
            index = bisect.bisect_right(starts, match.start) - 1
            base = starts[index]
            if match.end <= base + len(lines[index]):
                per_line[index].append(
                    EntityMatch(
                        match.entity,
                        match.start - base,
                        match.end - base,
                        match.masked,
                        match.confidence,
                        match.why,
                    )
                )
        for matches in per_line:
            yield self._resolve(matches)

    def _hits(self, text: str) -> dict[int, list[int]]:
        """Stage 1: detector id → end offsets (character offsets) of its trigger hits."""
        data = text.encode("utf-8", "surrogatepass")
        hits: dict[int, list[int]] = {}

        def on_match(pattern: int, start: int, end: int, flags: int, context: object) -> None:
            hits.setdefault(pattern, []).append(end)

        self._database.scan(data, match_event_handler=on_match)
        if len(data) != len(text):  # non-ASCII: map byte offsets to character offsets
            for pattern, ends in hits.items():
                hits[pattern] = [len(data[:end].decode("utf-8", "ignore")) for end in ends]
        return hits

    def _block(self, text: str, key: str | None) -> list[EntityMatch]:
        matches: list[EntityMatch] = []
        for detector_id, ends in self._hits(text).items():
            if detector_id == _PHONE_ID:
                matches.extend(self._phones(text, ends))
                continue
            detector = DETECTORS[detector_id]
            for start, end in _windows(ends, detector.before, detector.after, len(text)):
                for found in detector.extract.finditer(text, start, end):
                    value = found.group(detector.group)
                    if not _validated(detector.name, value):
                        continue
                    v_start, v_end = found.span(detector.group)
                    if detector.keywords and not _has_keyword(
                        text, v_start, detector.keywords, key
                    ):
                        continue
                    if detector.excluded_by and _has_keyword(
                        text, v_start, detector.excluded_by, key
                    ):
                        continue
                    matches.append(
                        EntityMatch(
                            detector.entity,
                            v_start,
                            v_end,
                            mask_value(detector.entity, value),
                            detector.confidence,
                            detector.name,
                        )
                    )
        return matches

    def _phones(self, text: str, ends: list[int]) -> list[EntityMatch]:
        matches: list[EntityMatch] = []
        for start, end in _windows(ends, 24, 4, len(text)):
            for found in _PHONE_CANDIDATE.finditer(text, start, end):
                masked = self._phone_cache(found.group().rstrip(" -.("))
                if masked:
                    matches.append(
                        EntityMatch(
                            "PHONE",
                            found.start(),
                            found.start() + len(found.group().rstrip(" -.(")),
                            masked,
                            0.9,
                            "phonenumbers",
                        )
                    )
        return matches

    def _phone_in(self, candidate: str) -> str | None:
        """The mask of ``candidate`` if it is a valid number in one of the regions.

        Like phonenumbers' VALID leniency, a number written without a country code must carry
        its national trunk prefix (``012-…`` in Malaysia), or be in parentheses.
        """
        if candidate.count("(") != candidate.count(")"):
            return None
        international = candidate.startswith(("+", "00"))
        if not international and not candidate.startswith(("0", "(")):
            return None
        for region in self.regions:
            try:
                number = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return mask_phone(number)
            if international:
                return None  # the country code fixed it: other regions will not help
        return None

    def _from_key(self, text: str, key: str | None) -> list[EntityMatch]:
        """Stage 3 for values whose meaning is in the field name alone."""
        if not key or not _key_may_tell(key):
            return []
        stripped = text.strip()
        whole = (0, len(text))
        if _PHONE_KEY.search(key) and stripped.isdigit() and 8 <= len(stripped) <= 15:
            number = _parse_msisdn(stripped)  # an msisdn field holds the number without "+"
            if number is not None:
                return [EntityMatch("PHONE", *whole, mask_phone(number), 0.85, "msisdn-key")]
        if (_LAT_KEY.match(key) and _float_within(stripped, 90.0)) or (
            _LON_KEY.match(key) and _float_within(stripped, 180.0)
        ):
            return [EntityMatch("GEO_COORDINATE", *whole, mask_text(stripped), 0.85, "geo-key")]
        if _MESSAGE_KEY.match(key) and len(_WORD.findall(text)) >= 3:
            return [
                EntityMatch(
                    "MESSAGE_BODY", *whole, f"<message, {len(text)} chars>", 0.85, "message-key"
                )
            ]
        if _PERSON_KEY.match(key) and _PERSON_VALUE.match(stripped):
            return [EntityMatch("PERSON", *whole, mask_text(stripped, keep=1), 0.7, "name-key")]
        return []

    @staticmethod
    def _resolve(matches: list[EntityMatch]) -> list[EntityMatch]:
        """Overlapping claims: the more specific entity, then the longer match, wins."""
        if len(matches) < 2:
            return matches
        kept: list[EntityMatch] = []
        ordered = sorted(matches, key=lambda m: (PRIORITY[m.entity], m.start - m.end, m.start))
        for match in ordered:
            if match.entity in ("MESSAGE_BODY", "PERSON") or not any(
                match.start < k.end and k.start < match.end
                for k in kept
                if k.entity not in ("MESSAGE_BODY", "PERSON")
            ):
                kept.append(match)
        return sorted(kept, key=lambda m: (m.start, m.end))


@lru_cache(maxsize=4096)
def _key_may_tell(key: str) -> bool:
    """Whether a field name alone can make its value personal data (cached: keys repeat)."""
    return any(
        pattern.search(key)
        for pattern in (_PHONE_KEY, _LAT_KEY, _LON_KEY, _MESSAGE_KEY, _PERSON_KEY)
    )


@lru_cache(maxsize=65536)
def _validated(name: str, value: str) -> bool:
    for detector in DETECTORS:
        if detector.name == name:
            return detector.validate(value)
    return False


def _windows(ends: list[int], before: int, after: int, limit: int) -> Iterator[tuple[int, int]]:
    """Merged ``[end-before, end+after)`` windows around sorted trigger hits."""
    current: tuple[int, int] | None = None
    for end in sorted(ends):
        start, stop = max(0, end - before), min(limit, end + after)
        if current and start <= current[1]:
            current = (current[0], max(current[1], stop))
        else:
            if current:
                yield current
            current = (start, stop)
    if current:
        yield current


def _has_keyword(text: str, start: int, keywords: tuple[str, ...], key: str | None) -> bool:
    """A whole-word keyword in the field name or shortly before the value."""
    if key and any(_word_in(k, key.lower().replace("_", " ")) for k in keywords):
        return True
    before = text[max(0, start - CONTEXT_CHARS) : start].lower()
    return any(_word_in(k, before) for k in keywords)


@lru_cache(maxsize=256)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){re.escape(keyword)}(?![a-z0-9])")


def _word_in(keyword: str, text: str) -> bool:
    return bool(_keyword_pattern(keyword).search(text))


@lru_cache(maxsize=65536)
def _parse_msisdn(digits: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _float_within(text: str, bound: float) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return "." in text and -bound <= value <= bound


def mask_value(entity: str, value: str) -> str:
    """A mask that keeps a hint of the value and nothing that identifies anyone."""
    if entity == "EMAIL":
        return mask_email(value)
    if entity == "CREDIT_CARD":
        digits = re.sub(r"\D", "", value)
        return f"{digits[:1]}*** **** **** {digits[-4:]}"
    if entity == "IP_ADDRESS":
        return value.rsplit(".", 1)[0] + ".*" if "." in value else value.split(":", 1)[0] + ":…"
    if entity == "SECRET":
        return f"{value[:4]}…<secret, {len(value)} chars>"
    return mask_text(value)
