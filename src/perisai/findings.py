"""The shared vocabulary: every producer emits these, every reporter consumes them.

The JSON shape produced by :meth:`Finding.to_dict` is the public findings contract
(see DESIGN.md); tools and tests read it, so fields are only ever added, never renamed.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from perisai.interleave import round_robin

SCAN, API_AUDIT = "scan", "api-audit"  # ScanReport.kind
_HTTP_OPERATION = re.compile(r"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/\S*)")

EXAMPLES_PER_ENTITY = 3  # masked examples a profile keeps of each entity type


class Severity(StrEnum):
    """One severity scale for every finding; ordered by :attr:`rank`."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse, so findings sort and compare by it."""
        return _SEVERITY_RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Auth(StrEnum):
    """How the target let us in (or did not)."""

    NONE = "none"
    DEFAULT_CREDENTIALS = "default-credentials"
    REQUIRED = "required"
    UNKNOWN = "unknown"


ENTITY_TYPES: tuple[str, ...] = (
    "PHONE",
    "EMAIL",
    "NATIONAL_ID",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "GEO_COORDINATE",
    "IMEI",
    "CRYPTO_ADDRESS",
    "OTP_CODE",
    "SECRET",
    "MESSAGE_BODY",
    "PERSON",
)


@dataclass(frozen=True, order=True)
class Target:
    """A network endpoint and the service perisai believes runs there."""

    host: str
    port: int
    service: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "service": self.service}

    def uri(self, path: str = "") -> str:
        """A URI for SARIF locations and evidence, e.g. ``redis://127.0.0.1:6379/0``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = f"/{path.lstrip('/')}" if path else ""
        return f"{self.service}://{host}:{self.port}{suffix}"


@dataclass(frozen=True)
class Evidence:
    """One short, human-readable line of proof; personal data already masked."""

    text: str

    def __str__(self) -> str:
        return self.text


def entity_summary(entities: dict[str, int]) -> str:
    """``PHONE 12, EMAIL 3`` — biggest first: how every report and evidence line says it."""
    ranked = sorted(
        ((n, c) for n, c in entities.items() if c), key=lambda item: (-item[1], item[0])
    )
    return ", ".join(f"{name} {count}" for name, count in ranked) or "none"


@dataclass
class DataProfile:
    """What a bounded sample revealed: counts of personal-data entities, nothing raw."""

    records_sampled: int = 0
    records_with_personal_data: int = 0
    records_estimated: int | None = None
    entities: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # masked, a few per entity type
    # the estimate is a floor: a part of the store was counted by nobody (a container whose
    # size is unknown, a listing cut at its cap), so reports say "at least"
    records_at_least: bool = False

    @property
    def has_personal_data(self) -> bool:
        return any(count > 0 for count in self.entities.values())

    @property
    def records_text(self) -> str:
        """``1,234``, ``at least 1,234``, or ``unknown``: how every report states the count."""
        if self.records_estimated is None:
            return "unknown"
        floor = "at least " if self.records_at_least else ""
        return f"{floor}{self.records_estimated:,}"

    def counted(self, records: int | None, *, at_least: bool = False) -> None:
        """Replace the estimate with the server's own count (a total it states for itself)."""
        self.records_estimated = records
        self.records_at_least = at_least and records is not None

    def merge(self, other: DataProfile) -> None:
        """Fold another profile (e.g. another table's) into this one; a part of unknown size
        beside known ones makes the sum a floor."""
        self.records_sampled += other.records_sampled
        self.records_with_personal_data += other.records_with_personal_data
        unknown = other.records_estimated is None or other.records_at_least
        if other.records_estimated is not None:
            self.records_estimated = (self.records_estimated or 0) + other.records_estimated
        self.records_at_least = self.records_at_least or unknown
        for name, count in other.entities.items():
            self.entities[name] = self.entities.get(name, 0) + count
        kept = Counter(_example_entity(example) for example in self.examples)
        for example in other.examples:
            entity = _example_entity(example)
            if example not in self.examples and kept[entity] < EXAMPLES_PER_ENTITY:
                kept[entity] += 1
                self.examples.append(example)

    def spread_examples(self, limit: int) -> list[str]:
        """At most ``limit`` examples, one of each entity type before a second of any, so a
        short evidence list shows every kind of data found, not three phone numbers."""
        by_entity: dict[str, list[str]] = {}
        for example in self.examples:
            by_entity.setdefault(_example_entity(example), []).append(example)
        return round_robin(by_entity.values(), limit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_estimated": self.records_estimated,
            "records_at_least": self.records_at_least and self.records_estimated is not None,
            "entities": {name: count for name, count in sorted(self.entities.items()) if count},
        }


@dataclass(frozen=True)
class Asset:
    """One server instance, however many of its ports a scan reached: ClickHouse's HTTP and
    native ports, RabbitMQ's AMQP and management ports. Summaries count assets, not ports, so
    one server is one exposed service and its records are counted once.

    ``id`` is stable across scans: it hashes the host, the service and what the server says
    about itself (a cluster name, the HTTP port its native port names), or the port when it
    says nothing that ties it to another port.
    """

    id: str
    ports: tuple[int, ...]

    @classmethod
    def named(cls, host: str, service: str, identity: str, ports: Iterable[int]) -> Asset:
        key = "|".join(("asset", host, service, identity))
        return cls(hashlib.sha256(key.encode()).hexdigest()[:16], tuple(sorted(set(ports))))

    @classmethod
    def of_port(cls, target: Target) -> Asset:
        """A server known by one port only (nothing it said ties it to another)."""
        return cls.named(target.host, target.service, f"port {target.port}", (target.port,))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ports": list(self.ports)}


@dataclass(frozen=True)
class Finding:
    """One proven fact about a target, in the shape of the findings contract."""

    rule: str
    severity: Severity
    title: str
    target: Target
    auth: Auth = Auth.UNKNOWN
    data: DataProfile = field(default_factory=DataProfile)
    ransom_note: bool = False
    evidence: tuple[Evidence, ...] = ()
    remediation: str = ""
    object: str = ""  # what inside the target the finding is about (db, index, key…)
    asset: Asset | None = None  # set by the scanner when it grouped the server's ports

    @property
    def is_compromise(self) -> bool:
        """A ransom-note or planted-payload finding (rules ``compromise.*``)."""
        return self.rule.startswith(COMPROMISE_PREFIX)

    @property
    def server(self) -> Asset:
        """The asset this finding is about: the scanner's grouping, else its own port."""
        return self.asset if self.asset is not None else Asset.of_port(self.target)

    @property
    def id(self) -> str:
        """Stable across scans: the same rule on the same object of the same target."""
        key = "|".join(
            (self.rule, self.target.host, str(self.target.port), self.target.service, self.object)
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def operation(self) -> tuple[str, str] | None:
        """(method, path) when the object is an API operation (``POST /otp``), else None."""
        found = _HTTP_OPERATION.fullmatch(self.object)
        return (found.group(1), found.group(2)) if found else None

    def where(self) -> str:
        """Where it is, for people: ``POST http://127.0.0.1:8080/otp`` for an API operation
        (the method before the URL, not inside its path), else the target's URI."""
        operation = self.operation
        if operation is not None:
            return f"{operation[0]} {self.target.uri(operation[1])}"
        return self.target.uri(self.object)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity.value,
            "title": self.title,
            "target": self.target.to_dict(),
            "auth": self.auth.value,
            "data": self.data.to_dict(),
            "ransom_note": self.ransom_note,
            "evidence": [e.text for e in self.evidence],
            "remediation": self.remediation,
            "object": self.object,
            "asset": self.server.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Finding:
        """Rebuild a finding from the contract (the findings store keeps that shape)."""
        target = raw["target"]
        data = raw.get("data") or {}
        asset = raw.get("asset")
        return cls(
            rule=raw["rule"],
            severity=Severity(raw["severity"]),
            title=raw["title"],
            target=Target(target["host"], int(target["port"]), target.get("service", "unknown")),
            auth=Auth(raw.get("auth", "unknown")),
            data=DataProfile(
                records_estimated=data.get("records_estimated"),
                entities=dict(data.get("entities") or {}),
                records_at_least=bool(data.get("records_at_least", False)),
            ),
            ransom_note=bool(raw.get("ransom_note", False)),
            evidence=tuple(Evidence(text) for text in raw.get("evidence", ())),
            remediation=raw.get("remediation", ""),
            object=raw.get("object", ""),
            asset=(
                Asset(str(asset["id"]), tuple(int(p) for p in asset["ports"]))
                if isinstance(asset, Mapping)
                else None  # a report stored before assets: each port is its own
            ),
        )


def _example_entity(example: str) -> str:
    """``PHONE`` of ``PHONE: +60 12-*** **89`` (examples are kept as such lines)."""
    return example.partition(":")[0]


COMPROMISE_PREFIX = "compromise."  # ransom notes and planted payloads, whatever the service


def compromised_ids(findings: Iterable[Finding]) -> frozenset[str]:
    """The one rule for "compromised", which every output uses: a ransom-note or planted-
    payload finding, a finding that carries a ransom note, and every other finding about the
    same store (host, port, service), so a store readable without auth that holds a planted
    cron job is marked like one that holds a ransom note."""
    findings = list(findings)
    marked = {f.target for f in findings if f.ransom_note or f.is_compromise}
    return frozenset(f.id for f in findings if f.target in marked)


def asset_severities(findings: Iterable[Finding]) -> dict[str, Severity]:
    """Each asset's severity: its worst finding's, whichever port that finding is on."""
    worst: dict[str, Severity] = {}
    for finding in findings:
        key = finding.server.id
        if key not in worst or finding.severity.rank > worst[key].rank:
            worst[key] = finding.severity
    return worst


def exposure_severity(auth: Auth, data: DataProfile, ransom_note: bool) -> Severity:
    """DESIGN.md's rule: readable + personal data or a note is critical; readable alone, high."""
    if auth in (Auth.NONE, Auth.DEFAULT_CREDENTIALS):
        if ransom_note or data.has_personal_data:
            return Severity.CRITICAL
        return Severity.HIGH
    return Severity.INFO


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first, then by target, so every report lists them the same way."""
    return sorted(findings, key=lambda f: (-f.severity.rank, f.target, f.rule, f.object))


@dataclass(frozen=True)
class Rule:
    """Declared metadata of a rule id: what it means, how to fix it, where to read more.

    Rule ids never change once released: reports, baselines and SARIF consumers key on them.
    """

    id: str
    name: str
    description: str
    remediation: str
    default_severity: Severity
    references: tuple[str, ...] = ()
    # how to see it yourself and what to change, for rules whose target is not one service
    # (an API operation): templates with {method}, {url}, {host} and {port}; reporters fall back
    # on the service's verify commands and config lines when these are empty
    verify: tuple[str, ...] = ()
    fix: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "remediation": self.remediation,
            "default_severity": self.default_severity.value,
            "references": list(self.references),
        }
        if self.verify:
            out["verify"] = list(self.verify)
        if self.fix:
            out["fix"] = list(self.fix)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Rule:
        return cls(
            id=raw["id"],
            name=raw["name"],
            description=raw["description"],
            remediation=raw["remediation"],
            default_severity=Severity(raw["default_severity"]),
            references=tuple(raw.get("references", ())),
            verify=tuple(raw.get("verify", ())),
            fix=tuple(raw.get("fix", ())),
        )


@dataclass
class ScanReport:
    """One scan: when, of what, and what it found. What the store keeps and reporters render."""

    version: str
    started: str  # ISO 8601, UTC
    finished: str
    targets: tuple[str, ...]  # the target specs as given, normalised (for "same targets" diffs)
    ports: str  # the port spec scanned, normalised
    findings: list[Finding] = field(default_factory=list)
    rules: dict[str, Rule] = field(default_factory=dict)
    scan_id: int | None = None  # set by the findings store
    notes: list[str] = field(default_factory=list)  # what went wrong on the way, for the user
    # every request an API audit sent: {"method", "path" (the spec's template), "status"}
    requests: list[dict[str, Any]] = field(default_factory=list)
    # "scan" (data stores on ports) or "api-audit" (abuse checks on an API's operations):
    # reporters word and lay out each for what it is
    kind: str = "scan"

    @property
    def is_api_audit(self) -> bool:
        return self.kind == API_AUDIT

    @property
    def scope_key(self) -> str:
        """Scans with the same key scanned the same thing and can be diffed."""
        return " ".join(self.targets) + " ports=" + self.ports

    def to_dict(self) -> dict[str, Any]:
        """The findings contract's top-level object (``requests`` only from an API audit)."""
        compromised = compromised_ids(self.findings)
        out: dict[str, Any] = {
            "tool": "perisai",
            "version": self.version,
            "started": self.started,
            "finished": self.finished,
            "scan_id": self.scan_id,
            "kind": self.kind,
            "targets": list(self.targets),
            "ports": self.ports,
            "findings": [
                {**f.to_dict(), "compromised": f.id in compromised}
                for f in sort_findings(self.findings)
            ],
            "assets": self.asset_summaries(),
            "notes": list(self.notes),
        }
        if self.requests:
            out["requests"] = [dict(r) for r in self.requests]
        return out

    def asset_summaries(self) -> list[dict[str, Any]]:
        """One entry per server, worst first: what counts of exposed services count."""
        worst = asset_severities(self.findings)
        entries: dict[str, dict[str, Any]] = {}
        for finding in sort_findings(self.findings):
            asset = finding.server
            entry = entries.setdefault(
                asset.id,
                {
                    "id": asset.id,
                    "host": finding.target.host,
                    "service": finding.target.service,
                    "ports": list(asset.ports),
                    "severity": worst[asset.id].value,
                    "findings": 0,
                },
            )
            entry["findings"] += 1
        return list(entries.values())

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], rules: Mapping[str, Any] | None = None
    ) -> ScanReport:
        return cls(
            version=raw["version"],
            started=raw["started"],
            finished=raw["finished"],
            targets=tuple(raw.get("targets", ())),
            ports=raw.get("ports", ""),
            findings=[Finding.from_dict(f) for f in raw.get("findings", ())],
            rules={rule_id: Rule.from_dict(r) for rule_id, r in (rules or {}).items()},
            scan_id=raw.get("scan_id"),
            notes=list(raw.get("notes", ())),
            requests=[dict(r) for r in raw.get("requests", ())],
            kind=raw.get("kind") or (API_AUDIT if raw.get("requests") else SCAN),
        )


@dataclass(frozen=True)
class ScanDiff:
    """What changed between two scans of the same scope, keyed on stable finding ids."""

    current: ScanReport
    previous: ScanReport | None
    new: tuple[Finding, ...]
    resolved: tuple[Finding, ...]
    unchanged: tuple[Finding, ...]

    @classmethod
    def between(cls, current: ScanReport, previous: ScanReport | None) -> ScanDiff:
        before = {f.id: f for f in previous.findings} if previous else {}
        now = {f.id: f for f in current.findings}
        return cls(
            current=current,
            previous=previous,
            new=tuple(sort_findings([f for i, f in now.items() if i not in before])),
            resolved=tuple(sort_findings([f for i, f in before.items() if i not in now])),
            unchanged=tuple(sort_findings([f for i, f in now.items() if i in before])),
        )
