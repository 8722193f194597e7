"""Spot the marks extortion campaigns leave in the stores they wipe.

The bots that wipe open databases leave a key, table or index with a telling name
(README, WARNING, RECOVER_YOUR_DATA…) holding a note that demands Bitcoin. A name alone or a
single keyword is not enough: the note must read like a demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perisai.classify import redact_text
from perisai.findings import Rule, Severity

NOTE_PREVIEW_CHARS = 240

RULE_RANSOM_NOTE = Rule(
    id="compromise.ransom-note",
    name="RansomNote",
    description=(
        "A note demanding payment was found in the data store: it has already been accessed, "
        "very likely copied and wiped, by an extortion campaign."
    ),
    remediation=(
        "Treat the store as breached: take it off the internet, require authentication, restore "
        "from your own backups, assess which personal data was exposed and notify as the law "
        "requires (e.g. GDPR art. 33, PDPA). Do not pay: these campaigns rarely keep a copy."
    ),
    default_severity=Severity.CRITICAL,
    references=("https://cwe.mitre.org/data/definitions/306.html",),
)

_NOTE_NAME = re.compile(
    r"(?i)(^|[^a-z])(readme|read_me|read-me|warning|recover|recovery|restore|ransom|"
    r"how_to_|hacked|pwned|meow|backup_info|your_data)"
)
_DEMAND_PHRASES = (
    re.compile(r"(?i)\b(bitcoin|btc|monero|xmr|ethereum|usdt)\b"),
    re.compile(r"(?i)\b(pay|send|transfer)\b.{0,40}\b(to|address|wallet)\b"),
    re.compile(r"(?i)\b(backed up|backup|downloaded|exported|dumped)\b"),
    re.compile(r"(?i)\b(recover|restore|get back|return)\b.{0,40}\b(data|database|db|files?)\b"),
    re.compile(r"(?i)\b(deleted|leaked|publish|sell|gdpr|authorities)\b"),
    re.compile(r"(?i)\b(contact|e-?mail)\b.{0,40}@"),
)
_BTC_ADDRESS = re.compile(r"\b(bc1[02-9ac-hj-np-z]{11,71}|[13][1-9A-HJ-NP-Za-km-z]{25,34})\b")


@dataclass(frozen=True)
class RansomNote:
    """Where the note was found and what it says (personal data masked, preview only)."""

    location: str
    preview: str
    payment_addresses: tuple[str, ...]


def is_note_name(name: str) -> bool:
    """A key/table/index name of the kind extortion bots create."""
    return bool(_NOTE_NAME.search(name))


def demand_score(text: str) -> int:
    """How many kinds of extortion phrase the text holds (0-6)."""
    return sum(1 for phrase in _DEMAND_PHRASES if phrase.search(text))


def detect_ransom_note(location: str, text: str) -> RansomNote | None:
    """A :class:`RansomNote` when ``text`` reads like a demand, else ``None``.

    Three kinds of demand phrase make a note anywhere; two suffice under a note-like name.
    """
    score = demand_score(text)
    if score >= 3 or (score >= 2 and is_note_name(location)):
        addresses = tuple(dict.fromkeys(_BTC_ADDRESS.findall(text)))
        preview = " ".join(redact_text(text[: NOTE_PREVIEW_CHARS * 4]).split())
        if len(preview) > NOTE_PREVIEW_CHARS:
            preview = preview[:NOTE_PREVIEW_CHARS] + "…"
        return RansomNote(location=location, preview=preview, payment_addresses=addresses)
    return None
