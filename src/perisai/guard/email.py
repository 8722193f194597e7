"""E-mail rules: well-formed address, no disposable domains (``disposable-email-domains``)."""

from __future__ import annotations

from disposable_email_domains import allowlist as _not_disposable
from disposable_email_domains import blocklist as _disposable

__all__ = ["is_disposable", "normalize_email"]


def normalize_email(raw: str) -> str | None:
    """The address lower-cased, or None when it is not one plausible address."""
    text = raw.strip().lower()
    if len(text) > 254 or text.count("@") != 1 or any(ch.isspace() for ch in text):
        return None
    local, domain = text.split("@")
    if not local or len(local) > 64 or "." not in domain:
        return None
    if domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return None
    if any(ch in text for ch in '<>,;:"()[]\\'):
        return None
    return text


def is_disposable(address: str) -> bool:
    domain = address.rsplit("@", 1)[-1]
    parts = domain.split(".")
    for i in range(len(parts) - 1):  # sub.mailinator.com counts as mailinator.com
        candidate = ".".join(parts[i:])
        if candidate in _not_disposable:
            return False
        if candidate in _disposable:
            return True
    return False
