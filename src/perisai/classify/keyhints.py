"""What a record's field name alone says about its value.

``60123456789`` is just a number until it sits under ``msisdn``; ``3.139`` is a coordinate
under ``lat``; three words are a message under ``body``. These hints serve both the record walk
(the key is known) and the JSON-lines fast path, where :data:`JSON_KEY_TRIGGER` finds such keys
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

_PHONE_KEY = re.compile(rf"(?i)(?:{'|'.join(PHONE_KEY_ENDINGS)})$")
_LAT_KEY = re.compile(rf"(?i)(?:{'|'.join(LAT_KEYS)})$")
_LON_KEY = re.compile(rf"(?i)(?:{'|'.join(LON_KEYS)})$")
_MESSAGE_KEY = re.compile(rf"(?i)(?:{'|'.join(MESSAGE_KEYS)})$")
_PERSON_KEY = re.compile(rf"(?i)(?:{'|'.join(PERSON_KEYS)})$")
_PERSON_VALUE = re.compile(r"^[A-Z][a-zA-Z'.-]+(?: (?:bin|binti|a/l|a/p|[A-Z][a-zA-Z'.-]*)){1,4}$")
_WORD = re.compile(r"[A-Za-z\u00C0-\u024F]{2,}")

# A JSON key that tells, in raw text: `"user_msisdn":`, `"lat" :`, and the same keys in JSON
# that is itself escaped inside a string (`\"msisdn\":`). The match ends just after the colon.
JSON_KEY_TRIGGER = (
    rf'"[A-Za-z0-9_]{{0,40}}(?:{"|".join(PHONE_KEY_ENDINGS)})\\?"\s*:'
    rf'|"(?:{"|".join(LAT_KEYS + LON_KEYS + MESSAGE_KEYS + PERSON_KEYS)})\\?"\s*:'
)


@lru_cache(maxsize=4096)
def key_may_tell(key: str) -> bool:
    """Whether a field name alone can make its value personal data (cached: keys repeat)."""
    return bool(
        _PHONE_KEY.search(key)
        or _LAT_KEY.match(key)
        or _LON_KEY.match(key)
        or _MESSAGE_KEY.match(key)
        or _PERSON_KEY.match(key)
    )


def from_key(text: str, key: str | None) -> list[EntityMatch]:
    """Entities that only the field name reveals; each spans the whole value."""
    if not key or not key_may_tell(key):
        return []
    stripped = text.strip()
    whole = (0, len(text))
    if _PHONE_KEY.search(key) and stripped.isdigit() and 8 <= len(stripped) <= 15:
        masked = _msisdn_mask(stripped)  # an msisdn field holds the number without "+"
        if masked is not None:
            return [EntityMatch("PHONE", *whole, masked, 0.85, "msisdn-key")]
    if (_LAT_KEY.match(key) and _float_within(stripped, 90.0)) or (
        _LON_KEY.match(key) and _float_within(stripped, 180.0)
    ):
        return [EntityMatch("GEO_COORDINATE", *whole, mask_text(stripped), 0.85, "geo-key")]
    if _MESSAGE_KEY.match(key) and len(_WORD.findall(text)) >= 3:
        masked = f"<message, {len(text)} chars>"
        return [EntityMatch("MESSAGE_BODY", *whole, masked, 0.85, "message-key")]
    if _PERSON_KEY.match(key) and _PERSON_VALUE.match(stripped):
        return [EntityMatch("PERSON", *whole, mask_text(stripped, keep=1), 0.7, "name-key")]
    return []


@lru_cache(maxsize=65536)
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
