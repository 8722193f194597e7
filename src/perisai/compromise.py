"""Spot the marks extortion campaigns leave in the stores they wipe.

The bots that wipe open databases leave a key, table or index with a telling name
(README, WARNING, RECOVER_YOUR_DATA…) holding a note that demands Bitcoin. A name alone or a
single keyword is not enough: the note must read like a demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perisai.classify import redact_text, validators
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

# Payment addresses a note may name: Bitcoin (base58check, bech32), Monero, Ethereum; each kept
# only when its checksum holds, so a random token is never shown as the attacker's wallet.
_ADDRESSES = (
    (re.compile(r"\b[13][1-9A-HJ-NP-Za-km-z]{25,34}\b"), validators.bitcoin_base58),
    (re.compile(r"(?i)\bbc1[02-9ac-hj-np-z]{11,71}\b"), validators.bitcoin_bech32),
    (re.compile(r"\b[48][1-9A-HJ-NP-Za-km-z]{94}\b"), validators.monero),
    (re.compile(r"\b0x[0-9a-fA-F]{40}\b"), validators.ethereum),
)

RULE_PLANTED_PAYLOAD = Rule(
    id="compromise.planted-payload",
    name="PlantedPayload",
    description=(
        "The store holds a cron line or an SSH public key written as a value: the trace of an "
        "attack that turns an open Redis into a shell on its host (CONFIG SET dir to a cron "
        "or .ssh directory, then SAVE)."
    ),
    remediation=(
        "Treat the host as compromised: check crontabs and authorized_keys of the account the "
        "store runs as, rebuild the host, then require authentication, bind to a private "
        "interface and rename or disable CONFIG."
    ),
    default_severity=Severity.CRITICAL,
    references=("https://cwe.mitre.org/data/definitions/306.html",),
)
_CRON_LINE = re.compile(r"(?m)^\s*(?:[*\d/,-]+\s+){4}[*\d/,-]+\s+\S.*$")
_SSH_KEY = re.compile(r"\b(?:ssh-(?:rsa|ed25519|dss)|ecdsa-sha2-nistp\d+) AAAA[0-9A-Za-z+/=]{20,}")


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
        addresses = payment_addresses(text)
        preview = " ".join(redact_text(text[: NOTE_PREVIEW_CHARS * 4]).split())
        if len(preview) > NOTE_PREVIEW_CHARS:
            preview = preview[:NOTE_PREVIEW_CHARS] + "…"
        return RansomNote(location=location, preview=preview, payment_addresses=addresses)
    return None


def payment_addresses(text: str) -> tuple[str, ...]:
    """Cryptocurrency addresses in ``text`` whose checksums hold, in order, each once."""
    found = [
        match.group()
        for pattern, valid in _ADDRESSES
        for match in pattern.finditer(text)
        if valid(match.group())
    ]
    return tuple(dict.fromkeys(sorted(found, key=text.find)))


@dataclass(frozen=True)
class PlantedPayload:
    """A value that is a cron job or an SSH key: where it is and what kind (masked preview)."""

    location: str
    kind: str  # "cron job" | "SSH public key"
    preview: str


def detect_planted_payload(location: str, text: str) -> PlantedPayload | None:
    """A :class:`PlantedPayload` when ``text`` carries a cron line or an SSH public key.

    The attack writes the payload between blank lines so that cron or sshd skip the rest of
    the dump file around it; the value is usually under keys like ``backup1``…``backup4``.
    """
    ssh = _SSH_KEY.search(text)
    if ssh:
        return PlantedPayload(location, "SSH public key", f"{ssh.group()[:24]}…")
    cron = _CRON_LINE.search(text)
    if cron and re.search(r"(?i)\b(curl|wget|sh|bash|python|perl|nc|base64)\b", cron.group()):
        return PlantedPayload(location, "cron job", redact_text(cron.group().strip())[:160])
    return None


WIPED_RECORDS_PER_NOTE = 3  # a store this small around its notes was emptied, not started


def looks_wiped(records_estimated: int | None, notes: int) -> bool:
    """Whether a store holds almost nothing but its ransom notes: the campaign's bot copied
    the data (or not) and deleted it, leaving the note as the store's content."""
    return (
        notes > 0
        and records_estimated is not None
        and (records_estimated <= notes * WIPED_RECORDS_PER_NOTE)
    )


WIPED_EVIDENCE = (
    "the store holds almost nothing but the note: its data was most likely deleted by the "
    "campaign (restore from your own backups)"
)
