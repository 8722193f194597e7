"""Silencing a known finding, on purpose and for a while: a reviewed allow-list entry that
expires.

A security team that has accepted a risk (a Redis on a lab network, a test broker) should not
be paged about it every round, nor forget it forever. Each entry names what it silences (a
finding id as the JSON report shows it, or a rule on a host:port), why, who reviewed it and
until when. An expired entry silences nothing, and the watch says so, so an accepted risk
comes back to a human. Compromise (ransom notes, planted payloads) is never silenced.

The file is YAML, a list of entries::

    - finding: 3f9a1c2b4d5e6f70          # or: rule: redis.unauthenticated
      target: 10.0.0.7:6379              #     with target: host:port
      reason: lab Redis, no real data (ticket SEC-142)
      reviewed_by: a.rahman
      expires: 2027-03-31
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from perisai.findings import COMPROMISE_PREFIX, Finding
from perisai.target_files import target_text
from perisai.usecases import UseCaseError

__all__ = ["AllowEntry", "AllowList", "load_allowlist"]

MAX_DAYS = 366  # an acceptance lasts at most a year: then someone looks again


@dataclass(frozen=True)
class AllowEntry:
    """One reviewed acceptance of a finding."""

    reason: str
    reviewed_by: str
    expires: date
    finding: str = ""  # a finding id, or:
    rule: str = ""  # a rule…
    target: str = ""  # …on host:port

    @property
    def names(self) -> str:
        return self.finding or f"{self.rule} on {self.target}"

    def matches(self, finding: Finding) -> bool:
        if self.finding:
            return finding.id == self.finding
        where = target_text(finding.target.host, finding.target.port)
        return finding.rule == self.rule and where == self.target


@dataclass(frozen=True)
class AllowList:
    entries: tuple[AllowEntry, ...] = ()

    def silences(self, finding: Finding, today: date) -> AllowEntry | None:
        """The live entry that silences ``finding`` (never a compromise finding)."""
        if finding.is_compromise:
            return None
        for entry in self.entries:
            if entry.expires >= today and entry.matches(finding):
                return entry
        return None

    def expired(self, today: date) -> list[AllowEntry]:
        return [entry for entry in self.entries if entry.expires < today]


def load_allowlist(path: Path, today: date) -> AllowList:
    """Read and check the file; :class:`UseCaseError` naming the entry and the fix."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UseCaseError(f"cannot read allow-list {path}: {error.strerror or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UseCaseError(f"allow-list {path} is not YAML: {str(error).splitlines()[0]}") from None
    if document is None:
        return AllowList()
    if not isinstance(document, list):
        raise UseCaseError(f"allow-list {path}: expected a list of entries")
    return AllowList(
        tuple(_entry(item, number, path, today) for number, item in enumerate(document, 1))
    )


def _entry(item: Any, number: int, path: Path, today: date) -> AllowEntry:
    where = f"allow-list {path}, entry {number}"
    if not isinstance(item, dict):
        raise UseCaseError(f"{where}: expected a mapping with reason, reviewed_by, expires")
    missing = [key for key in ("reason", "reviewed_by", "expires") if not item.get(key)]
    if missing:
        raise UseCaseError(
            f"{where}: {', '.join(missing)} missing (every entry is reviewed and expires)"
        )
    expires = item["expires"]
    if not isinstance(expires, date):
        raise UseCaseError(f"{where}: expires must be a date, YYYY-MM-DD")
    if (expires - today).days > MAX_DAYS:
        raise UseCaseError(
            f"{where}: expires more than a year ahead; review it within {MAX_DAYS} days"
        )
    finding, rule, target = (str(item.get(key) or "") for key in ("finding", "rule", "target"))
    if not finding and not (rule and target):
        raise UseCaseError(f"{where}: name a finding id, or a rule with a target host:port")
    if rule.startswith(COMPROMISE_PREFIX):
        raise UseCaseError(f"{where}: ransom notes and planted payloads are never silenced")
    return AllowEntry(
        reason=str(item["reason"]),
        reviewed_by=str(item["reviewed_by"]),
        expires=expires,
        finding=finding,
        rule=rule,
        target=target,
    )
