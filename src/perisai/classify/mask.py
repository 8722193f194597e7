"""Masks that keep enough of a value to recognise it, and nothing that identifies anyone."""

from __future__ import annotations

import phonenumbers


def mask_phone(number: phonenumbers.PhoneNumber) -> str:
    """``+60 12-*** **89``: country code, first two national digits and last two stay."""
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    prefix = f"+{number.country_code}"
    national = formatted[len(prefix) :]
    digit_positions = [i for i, ch in enumerate(national) if ch.isdigit()]
    keep = set(digit_positions[:2]) | set(digit_positions[-2:])
    masked = "".join(
        ch if (not ch.isdigit() or i in keep) else "*" for i, ch in enumerate(national)
    )
    return prefix + masked


def mask_email(address: str) -> str:
    """``s***@example.org``: the first letter of the local part and the domain stay."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_text(text: str, keep: int = 2) -> str:
    """A generic mask for a value of unknown kind: its first and last characters only."""
    if len(text) <= keep * 2:
        return "*" * len(text)
    return f"{text[:keep]}{'*' * min(len(text) - keep * 2, 8)}{text[-keep:]}"
