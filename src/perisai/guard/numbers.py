"""Number intelligence: parse, validate and type a phone number with ``phonenumbers``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

__all__ = ["NUMBER_TYPES", "NumberInfo", "inspect_number"]

_TYPES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
NUMBER_TYPES: tuple[str, ...] = tuple(_TYPES.values())


@dataclass(frozen=True, slots=True)
class NumberInfo:
    e164: str
    country: str  # ISO 3166 alpha-2, "ZZ" when none
    number_type: str

    def prefix(self, drop: int) -> str:
        """The number minus its last ``drop`` digits: what adjacent-number pumping shares."""
        return self.e164[:-drop]


@lru_cache(maxsize=65536)
def inspect_number(raw: str) -> NumberInfo | None:
    """The number's E.164 form, country and type, or None when it is not a valid number.

    Only international form (``+<country code>…``) is accepted: a guard has no default region.
    A bounded LRU keeps the answer: one request's number is looked at by the decision, the
    ``sent`` event and the code check, and each parse costs tens of microseconds.
    """
    text = raw.strip()
    if not text.startswith("+") or len(text) > 32:
        return None
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    # ``is_valid_number`` is "a region owns the calling code and the number has a type": the
    # same pattern pass as ``number_type``, so run that pass once instead of twice.
    region = phonenumbers.region_code_for_number(number)
    if region is None:
        return None
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return NumberInfo(e164=e164, country=region, number_type=_TYPES.get(kind, "unknown"))
