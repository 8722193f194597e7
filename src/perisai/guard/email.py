"""E-mail rules: well-formed address, no disposable domains (``disposable-email-domains``).

Every address has one canonical spelling (:func:`normalize_email`), the key its rate counters,
codes and verified-address records live under, so that respelling one mailbox does not buy a
fresh limit:

- case does not count (``Siti@Example.ORG`` is ``siti@example.org``);
- a ``+tag`` in the local part is dropped, at every domain (``siti+promo@example.org`` is
  ``siti@example.org``): most providers deliver sub-addresses to the base mailbox, and where
  one does not, the two addresses only share a limit. A local part that starts with ``+``
  keeps it;
- an internationalised domain is kept in its ASCII (punycode) form, so ``bücher.example`` and
  ``xn--bcher-kva.example`` are one domain (IDNA 2008 with UTS 46 mapping, ``idna``); a
  domain that IDNA refuses is malformed;
- a non-ASCII local part is NFC-normalised (composed and decomposed accents are one name);
- Gmail only: dots in the local part do not count and ``googlemail.com`` is ``gmail.com``
  (``s.i.t.i@googlemail.com`` is ``siti@gmail.com``). At other providers dots matter.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import idna
from disposable_email_domains import allowlist as _not_disposable
from disposable_email_domains import blocklist as _disposable

__all__ = ["is_disposable", "normalize_email"]

_GMAIL = frozenset({"gmail.com", "googlemail.com"})


@lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str | None:
    """The ASCII (punycode) form of an internationalised or punycode domain, or None when it
    is not a valid IDNA domain."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


def normalize_email(raw: str) -> str | None:
    """The address's canonical spelling (see the module's docstring), or None when it is not
    one plausible address."""
    text = raw.strip().lower()
    if len(text) > 254 or text.count("@") != 1 or any(ch.isspace() for ch in text):
        return None
    if any(ch in text for ch in '<>,;:"()[]\\'):
        return None
    local, domain = text.split("@")
    if not domain.isascii() or "xn--" in domain:
        ascii_domain = _ascii_domain(domain)
        if ascii_domain is None:
            return None
        domain = ascii_domain
    if not local or len(local) > 64 or "." not in domain:
        return None
    if domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return None
    if not local.isascii():
        local = unicodedata.normalize("NFC", local)
    tag = local.find("+")
    if tag > 0:
        local = local[:tag]
    if domain in _GMAIL:
        local = local.replace(".", "")
        if not local:
            return None
        domain = "gmail.com"
    return f"{local}@{domain}"


def is_disposable(address: str) -> bool:
    """Whether the address's domain, or one it is a subdomain of, is a disposable-mail
    service; judged on the domain's ASCII (punycode) form, as the lists spell it."""
    domain = address.rsplit("@", 1)[-1].lower()
    if not domain.isascii() or "xn--" in domain:
        domain = _ascii_domain(domain) or domain
    parts = domain.split(".")
    for i in range(len(parts) - 1):  # sub.mailinator.com counts as mailinator.com
        candidate = ".".join(parts[i:])
        if candidate in _not_disposable:
            return False
        if candidate in _disposable:
            return True
    return False
