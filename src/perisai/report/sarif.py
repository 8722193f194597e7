"""SARIF 2.1.0 for GitHub code scanning and other SARIF consumers.

One severity mapping for every rule and result (:data:`SEVERITY_TO_SARIF`): critical/high are
errors, medium a warning, the rest notes. Each result carries its own level and
``security-severity``, from its finding's severity: the same rule can be high on one store and
critical on another (personal data seen). A rule carries its help and its declared default
(level and security-severity), never the worst result of a run. GitHub code scanning reads
security-severity from the rule, so there an alert ranks by the rule's default; the result's
own value and level are for every other consumer (and GitHub's level column). Results carry
the finding id as a partial fingerprint, so a consumer tracks a finding across uploads the way
``perisai report --diff`` does.

Locations: GitHub rejects a whole upload whose artifact URIs use a scheme other than the
checkout's (``SARIF URI scheme "redis" did not match the checkout URI scheme "file"``;
github/codeql-action#754). So ``artifactLocation.uri`` is the target URI without its scheme
separator, a relative reference (``redis/127.0.0.1:6379/0``), and the real target URI
(``redis://127.0.0.1:6379/0``) is the result's logical location and part of its message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from perisai import __version__
from perisai.findings import (
    Finding,
    Rule,
    ScanDiff,
    ScanReport,
    Severity,
    entity_summary,
    sort_findings,
)
from perisai.report.interface import Reporter

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/perisai/perisai"
FINGERPRINT_KEY = "perisaiFindingId/v1"

# The one place severities become SARIF: (level, security-severity). GitHub reads the
# security-severity string as a CVSS-like score: >= 9.0 critical, >= 7.0 high, >= 4.0 medium.
SEVERITY_TO_SARIF: dict[Severity, tuple[str, str]] = {
    Severity.CRITICAL: ("error", "9.5"),
    Severity.HIGH: ("error", "8.0"),
    Severity.MEDIUM: ("warning", "5.5"),
    Severity.LOW: ("note", "3.0"),
    Severity.INFO: ("note", "0.0"),
}

# Characters an artifact URI may carry unescaped in its path (RFC 3986 pchar and "/").
_URI_SAFE = "/:@!$&'()*+,;=-._~"
# GitHub rejects longer rule names and descriptions.
_NAME_LIMIT = 255
_TEXT_LIMIT = 1024


class SarifReporter(Reporter):
    """One SARIF run with every current finding; with a diff, each says new or unchanged.

    Resolved findings are left out rather than listed as ``absent``: consumers such as GitHub
    close an alert when its fingerprint stops appearing.
    """

    def render(self, report: ScanReport, diff: ScanDiff | None = None) -> str:
        findings = sort_findings(report.findings)
        rules = _rules_for(findings, report.rules)
        index = {rule["id"]: i for i, rule in enumerate(rules)}
        new = {f.id for f in diff.new} if diff is not None else None
        results = []
        for finding in findings:
            result = _result(finding, index[finding.rule])
            if new is not None:
                result["baselineState"] = "new" if finding.id in new else "unchanged"
            results.append(result)
        invocation: dict[str, Any] = {"executionSuccessful": True}
        for key, stamp in (("startTimeUtc", report.started), ("endTimeUtc", report.finished)):
            utc = _utc(stamp)
            if utc is not None:
                invocation[key] = utc
        document = {
            "$schema": SARIF_SCHEMA,
            "version": SARIF_VERSION,
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "perisai",
                            "version": __version__,
                            "semanticVersion": __version__,
                            "informationUri": INFORMATION_URI,
                            "rules": rules,
                        }
                    },
                    "invocations": [invocation],
                    "results": results,
                }
            ],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _rules_for(findings: list[Finding], known: dict[str, Rule]) -> list[dict[str, Any]]:
    """One reporting descriptor per rule id present, sorted by id so indexes are stable."""
    by_rule: dict[str, list[Finding]] = {}
    for finding in findings:
        by_rule.setdefault(finding.rule, []).append(finding)
    descriptors = []
    for rule_id in sorted(by_rule):
        group = by_rule[rule_id]
        rule = known.get(rule_id) or _synthesise(group[0])
        services = sorted({f.target.service for f in group})
        descriptors.append(_descriptor(rule, services))
    return descriptors


def _synthesise(finding: Finding) -> Rule:
    """A rule no producer declared (a third-party probe, an old store): built from a finding."""
    name = "".join(part.capitalize() for part in finding.rule.replace("-", ".").split("."))
    return Rule(
        id=finding.rule,
        name=name or finding.rule,
        description=finding.title,
        remediation=finding.remediation or "See the finding's evidence.",
        default_severity=finding.severity,
    )


def _descriptor(rule: Rule, services: list[str]) -> dict[str, Any]:
    level, security_severity = SEVERITY_TO_SARIF[rule.default_severity]
    references_text = "".join(f"\n- {ref}" for ref in rule.references)
    references_markdown = "".join(f"\n- <{ref}>" for ref in rule.references)
    descriptor: dict[str, Any] = {
        "id": rule.id,
        "name": _clip(rule.name, _NAME_LIMIT),
        "shortDescription": {"text": _clip(_first_sentence(rule.description), _TEXT_LIMIT)},
        "fullDescription": {"text": _clip(rule.description, _TEXT_LIMIT)},
        "help": {
            "text": f"{rule.remediation}{references_text}",
            "markdown": f"**Fix:** {rule.remediation}{references_markdown}",
        },
        "defaultConfiguration": {"level": level},
        "properties": {
            "security-severity": security_severity,
            "precision": "high",  # every finding is a read that succeeded, not a guess
            "tags": ["security", *services],
        },
    }
    if rule.references:
        descriptor["helpUri"] = rule.references[0]
    return descriptor


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    level, security_severity = SEVERITY_TO_SARIF[finding.severity]
    return {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": level,
        "message": {"text": message_text(finding)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(finding)},
                    # GitHub lists a region as required; a data store has no lines.
                    "region": {"startLine": 1},
                },
                "logicalLocations": [
                    {"fullyQualifiedName": target_uri(finding), "kind": "resource"}
                ],
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: finding.id},
        "properties": {
            "security-severity": security_severity,
            "severity": finding.severity.value,
            "auth": finding.auth.value,
            "entities": dict(sorted(finding.data.entities.items())),
            "records_estimated": finding.data.records_estimated,
            "records_at_least": finding.data.to_dict()["records_at_least"],
            "ransom_note": finding.ransom_note,
            "evidence": [e.text for e in finding.evidence],  # masked by the probe
            "asset": finding.server.to_dict(),  # the server, shared by all its ports' results
        },
    }


def message_text(finding: Finding) -> str:
    """The title and the facts a reviewer triages on, in one line."""
    facts = [f"auth: {finding.auth.value}"]
    if finding.data.entities:
        facts.append(f"personal data: {entity_summary(finding.data.entities)}")
    if finding.data.records_estimated is not None:
        facts.append(f"records estimated: {finding.data.records_text}")
    if finding.ransom_note:
        facts.append("ransom note found")
    where = finding.where() if finding.operation else target_uri(finding)
    return f"{finding.title} at {where} ({'; '.join(facts)})"


def target_uri(finding: Finding) -> str:
    """``redis://127.0.0.1:6379/0``; object names percent-encoded so the URI stays valid. An
    API operation's URI is its URL (the method is in the message, not the path)."""
    operation = finding.operation
    path = operation[1] if operation is not None else finding.object
    return finding.target.uri(quote(path, safe=_URI_SAFE))


def artifact_uri(finding: Finding) -> str:
    """``redis/127.0.0.1:6379/0``: the target URI as a scheme-less relative reference.

    The first segment (the service) is fully encoded, so it can never read as a scheme; an
    IPv6 host's brackets, not allowed in a path, are encoded too.
    """
    target = finding.target
    host = f"[{target.host}]" if ":" in target.host else target.host
    authority = quote(f"{host}:{target.port}", safe=":")
    operation = finding.operation
    path = quote((operation[1] if operation else finding.object).lstrip("/"), safe=_URI_SAFE)
    return "/".join(part for part in (quote(target.service, safe=""), authority, path) if part)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_sentence(text: str) -> str:
    return text.split(";")[0].split(". ")[0].strip() or text


def _utc(stamp: str) -> str | None:
    """SARIF wants UTC with a ``Z``; a stamp that does not parse is left out, not guessed."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
