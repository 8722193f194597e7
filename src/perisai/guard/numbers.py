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
    """
    text = raw.strip()
    if not text.startswith("+") or len(text) > 32:
        return None
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    country = phonenumbers.region_code_for_number(number) or "ZZ"
    kind = _TYPES.get(phonenumbers.number_type(number), "unknown")
    return NumberInfo(e164=e164, country=country, number_type=kind)
