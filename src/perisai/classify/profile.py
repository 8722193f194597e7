"""Turn a bounded sample of records into a :class:`DataProfile`.

This is the foundation's classifier: e-mail, phone numbers (``phonenumbers`` at VALID
leniency), GPS coordinates and message bodies in key context. The full classifier replaces
what :func:`find_entities` does inside; :func:`profile_records` and :func:`redact_text` keep
their signatures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

from perisai.classify.mask import mask_email, mask_phone, mask_text
from perisai.findings import DataProfile

MAX_TEXT_CHARS = 64 * 1024  # longer values are classified on their head only
MAX_DEPTH = 16  # nested records deeper than this are not walked
DEFAULT_REGIONS: tuple[str, ...] = ("MY",)

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_PHONE_KEYS = re.compile(r"(?i)(msisdn|phone|mobile|tel|sender|recipient|to|from)$")
_LAT_KEYS = re.compile(r"(?i)^(lat|latitude|gps_lat)$")
_LON_KEYS = re.compile(r"(?i)^(lon|lng|long|longitude|gps_lon|gps_lng)$")
_GEO_PAIR_KEYS = re.compile(r"(?i)^(gps|geo|location|coords?|latlng|position)$")
_MESSAGE_KEYS = re.compile(r"(?i)^(msg|message|body|text|content|chat|plaintext)$")
_GEO_PAIR = re.compile(r"^\s*(-?\d{1,2}\.\d{3,})\s*,\s*(-?\d{1,3}\.\d{3,})\s*$")


@dataclass(frozen=True)
class EntityMatch:
    """One entity found in one value: its type, where it is, and its masked form."""

    entity: str
    start: int
    end: int
    masked: str


def find_entities(
    text: str, key: str | None = None, regions: tuple[str, ...] = DEFAULT_REGIONS
) -> list[EntityMatch]:
    """Every personal-data entity in ``text``; ``key`` (the field name) adds context."""
    text = text[:MAX_TEXT_CHARS]
    matches = [
        EntityMatch("EMAIL", m.start(), m.end(), mask_email(m.group()))
        for m in _EMAIL.finditer(text)
    ]
    matches.extend(_find_phones(text, key, regions))
    matches.extend(_find_in_key_context(text, key))
    return matches


def _find_phones(text: str, key: str | None, regions: tuple[str, ...]) -> list[EntityMatch]:
    seen: dict[tuple[int, int], EntityMatch] = {}
    for region in regions or (None,):
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
            span = (match.start, match.end)
            if span not in seen:
                seen[span] = EntityMatch("PHONE", match.start, match.end, mask_phone(match.number))
    digits = text.strip()
    if not seen and key and _PHONE_KEYS.search(key) and digits.isdigit() and 8 <= len(digits) <= 15:
        # an msisdn field holds the number without its "+": 60123456789
        try:
            number = phonenumbers.parse("+" + digits, None)
        except phonenumbers.NumberParseException:
            return []
        if phonenumbers.is_valid_number(number):
            return [EntityMatch("PHONE", 0, len(text), mask_phone(number))]
    return list(seen.values())


def _find_in_key_context(text: str, key: str | None) -> list[EntityMatch]:
    if not key:
        return []
    pair = _GEO_PAIR.match(text) if _GEO_PAIR_KEYS.match(key) else None
    if (
        (_LAT_KEYS.match(key) and _is_float_within(text, 90.0))
        or (_LON_KEYS.match(key) and _is_float_within(text, 180.0))
        or (pair and _is_float_within(pair[1], 90.0) and _is_float_within(pair[2], 180.0))
    ):
        return [EntityMatch("GEO_COORDINATE", 0, len(text), mask_text(text))]
    if _MESSAGE_KEYS.match(key) and len(text.split()) >= 3 and any(c.isalpha() for c in text):
        return [EntityMatch("MESSAGE_BODY", 0, len(text), f"<message, {len(text)} chars>")]
    return []


def _is_float_within(text: str, bound: float) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return "." in text and -bound <= value <= bound


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
        yield from iter_fields(
            bytes(record[:MAX_TEXT_CHARS]).decode("utf-8", "replace"), key, depth
        )
    elif isinstance(record, str):
        stripped = record.lstrip()
        if stripped[:1] in ("{", "[") and len(record) <= MAX_TEXT_CHARS:
            try:
                parsed = json.loads(record)
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)):
                yield from iter_fields(parsed, key, depth + 1)
                return
        yield key, record
    elif record is not None:
        yield key, str(record)


def profile_records(
    records: Iterable[object], regions: tuple[str, ...] = DEFAULT_REGIONS, max_examples: int = 3
) -> DataProfile:
    """Count personal-data entities over a sample; keep a few masked examples per type."""
    profile = DataProfile()
    examples_per_type: dict[str, int] = {}
    for record in records:
        profile.records_sampled += 1
        found_any = False
        for key, text in iter_fields(record):
            for match in find_entities(text, key, regions):
                found_any = True
                profile.entities[match.entity] = profile.entities.get(match.entity, 0) + 1
                if examples_per_type.get(match.entity, 0) < max_examples:
                    examples_per_type[match.entity] = examples_per_type.get(match.entity, 0) + 1
                    profile.examples.append(f"{match.entity}: {match.masked}")
        if found_any:
            profile.records_with_personal_data += 1
    return profile


def redact_text(text: str, regions: tuple[str, ...] = DEFAULT_REGIONS) -> str:
    """``text`` with every e-mail and phone number replaced by its mask (for evidence lines)."""
    matches = [m for m in find_entities(text, None, regions) if m.entity in ("EMAIL", "PHONE")]
    out: list[str] = []
    cursor = 0
    for match in sorted(matches, key=lambda m: m.start):
        if match.start < cursor:
            continue
        out.append(text[cursor : match.start])
        out.append(match.masked)
        cursor = match.end
    out.append(text[cursor : len(text)])
    return "".join(out)
