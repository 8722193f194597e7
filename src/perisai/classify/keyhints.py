"""What a record's field name alone says about its value.

``60123456789`` is just a number until it sits under ``msisdn``; ``3.139`` is a coordinate
under ``lat``; three words are a message under ``body``. These hints serve both the record walk
(the key is known) and the JSON-lines fast path, where :data:`JSON_KEY_TRIGGERS` find such keys
in raw text for hyperscan.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

from perisai.classify.mask import mask_phone, mask_text
from perisai.classify.match import EntityMatch

PHONE_KEY_ENDINGS = (
    "msisdn",
    "phone",
    "mobile",
    "tel",
    "telephone",
    "hp",
    "sender",
    "recipient",
    "to",
    "from",
)
LAT_KEYS = ("lat", "latitude", "gps_lat")
LON_KEYS = ("lon", "lng", "long", "longitude", "gps_lon", "gps_lng")
MESSAGE_KEYS = ("msg", "message", "body", "text", "content", "chat", "plaintext", "message_text")
_NAME_STEMS = ("full", "sender", "recipient", "display", "first", "last", "customer")
PERSON_KEYS = ("name", "nama", *(f"{stem}{sep}name" for stem in _NAME_STEMS for sep in ("", "_")))

CACHED_TEXT_CHARS = 256  # what the key alone says about shorter values is cached (they repeat)

# Field names by what they tell: a phone key ends in one of its words (``sender_msisdn``),
# the others are the whole name (``lat``, ``body``, ``full_name``), any case.
KEY_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("phone", re.compile(rf"(?i)(?:{'|'.join(PHONE_KEY_ENDINGS)})$")),
    ("lat", re.compile(rf"(?i)^(?:{'|'.join(LAT_KEYS)})$")),
    ("lon", re.compile(rf"(?i)^(?:{'|'.join(LON_KEYS)})$")),
    ("message", re.compile(rf"(?i)^(?:{'|'.join(MESSAGE_KEYS)})$")),
    ("person", re.compile(rf"(?i)^(?:{'|'.join(PERSON_KEYS)})$")),
)
# Capitalised words in Latin script, diacritics too (Hamanová, Gyôry, Şahin)
_UPPER = "A-Z\u00c0-\u00d6\u00d8-\u00de"
_LETTER = "a-zA-Z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f'.-"
_PERSON_VALUE = re.compile(
    rf"^[{_UPPER}][{_LETTER}]+(?: (?:bin|binti|a/l|a/p|[{_UPPER}][{_LETTER}]*)){{1,4}}$"
)
_WORD = re.compile(r"[A-Za-z\u00C0-\u024F]{2,}")

# The same keys in raw JSON, one hyperscan expression per kind, each ending just after the
# colon: `"user_msisdn":`, `"lat" :`, and in JSON escaped inside a string (`\"msisdn\":`).
JSON_KEY_TRIGGERS: tuple[tuple[str, str], ...] = (
    ("phone", rf'"[^"\\\n]{{0,40}}(?:{"|".join(PHONE_KEY_ENDINGS)})\\?"\s*:'),
    ("lat", rf'"(?:{"|".join(LAT_KEYS)})\\?"\s*:'),
    ("lon", rf'"(?:{"|".join(LON_KEYS)})\\?"\s*:'),
    ("message", rf'"(?:{"|".join(MESSAGE_KEYS)})\\?"\s*:'),
    ("person", rf'"(?:{"|".join(PERSON_KEYS)})\\?"\s*:'),
)


@lru_cache(maxsize=4096)
def key_kind(key: str) -> str | None:
    """What a field name says its value is (``phone``, ``lat``, …), or None (cached)."""
    for kind, pattern in KEY_KINDS:
        if pattern.search(key):
            return kind
    return None


def key_may_tell(key: str) -> bool:
    """Whether a field name alone can make its value personal data."""
    return key_kind(key) is not None


def from_key(text: str, key: str | None) -> list[EntityMatch]:
    """Entities that only the field name reveals; each spans the whole value."""
    kind = key_kind(key) if key else None
    return list(from_kind(text, kind)) if kind else []


def from_kind(text: str, kind: str) -> tuple[EntityMatch, ...]:
    """What a value is, given what its key says it is (``kind`` from :func:`key_kind`)."""
    if len(text) <= CACHED_TEXT_CHARS:
        return _from_kind_cached(text, kind)
    return _from_kind(text, kind)


@lru_cache(maxsize=65536)
def _from_kind_cached(text: str, kind: str) -> tuple[EntityMatch, ...]:
    return _from_kind(text, kind)


def _from_kind(text: str, kind: str) -> tuple[EntityMatch, ...]:
    stripped = text.strip()
    whole = (0, len(text))
    if kind == "phone":
        if stripped.isdigit() and 8 <= len(stripped) <= 15:
            masked = _msisdn_mask(stripped)  # an msisdn field holds the number without "+"
            if masked is not None:
                return (EntityMatch("PHONE", *whole, masked, 0.85, "msisdn-key"),)
        elif _PERSON_VALUE.match(stripped):  # a chat's "from": "Siti Aminah" (Telegram's JSON)
            return (EntityMatch("PERSON", *whole, mask_text(stripped, keep=1), 0.7, "sender-key"),)
    elif kind in ("lat", "lon"):
        if _float_within(stripped, 90.0 if kind == "lat" else 180.0):
            return (EntityMatch("GEO_COORDINATE", *whole, mask_text(stripped), 0.85, "geo-key"),)
    elif kind == "message":
        if len(_WORD.findall(text)) >= 3:
            masked = f"<message, {len(text)} chars>"
            return (EntityMatch("MESSAGE_BODY", *whole, masked, 0.85, "message-key"),)
    elif kind == "person" and _PERSON_VALUE.match(stripped):
        return (EntityMatch("PERSON", *whole, mask_text(stripped, keep=1), 0.7, "name-key"),)
    return ()


@lru_cache(maxsize=65536)
def person_value(text: str) -> bool:
    """Whether a value under a name key reads as a person's name (capitalised words)."""
    return bool(_PERSON_VALUE.match(text.strip()))


def _msisdn_mask(digits: str) -> str | None:
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    return mask_phone(number) if phonenumbers.is_valid_number(number) else None


def _float_within(text: str, bound: float) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return "." in text and -bound <= value <= bound
